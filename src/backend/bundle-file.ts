import { type BoundedRead, readBounded, readBoundedSync } from "../files/index.js";
import { MAX_BUNDLE_BYTES } from "../runtime/index.js";

/**
 * Largest `--bundles-dir` file read. A bundle is at most MAX_BUNDLE_BYTES
 * encoded; its JSON is larger (field names, quoting, indentation, escapes),
 * so four times that leaves room for any file a person writes, while a file
 * past it (a log or an image saved there by mistake, a sparse file) is
 * refused by its size, never read into memory first.
 */
export const MAX_BUNDLE_FILE_BYTES = 4 * MAX_BUNDLE_BYTES;

/**
 * One `--bundles-dir` file read within {@link MAX_BUNDLE_FILE_BYTES}
 * (files/bounded-read.ts): its text, or why it was not read (over the bound,
 * or not a regular file such as a FIFO, which a plain read would wait on
 * forever). I/O errors are thrown.
 */
export type BundleFileRead = { text: string } | { refused: string; identity: string };

/** Reads `name` in `path` (sync: the start-up load). */
export function readBundleFileSync(path: string, name: string): BundleFileRead {
  return bundleFileRead(name, readBoundedSync(path, MAX_BUNDLE_FILE_BYTES));
}

/** Reads `name` in `path` (async: the re-reads while serving). */
export async function readBundleFile(path: string, name: string): Promise<BundleFileRead> {
  return bundleFileRead(name, await readBounded(path, MAX_BUNDLE_FILE_BYTES));
}

function bundleFileRead(name: string, read: BoundedRead): BundleFileRead {
  switch (read.kind) {
    case "read":
      return { text: read.bytes.toString("utf8") };
    case "not-regular":
      return { refused: `--bundles-dir file ${name} is not a regular file`, identity: identityOf(read.size, read.mtimeMs) };
    case "too-large":
      return {
        refused: overBound(name, read.grew ? `over ${MAX_BUNDLE_FILE_BYTES}` : String(read.size)),
        identity: identityOf(read.size, read.mtimeMs),
      };
  }
}

function overBound(name: string, size: string): string {
  return `--bundles-dir file ${name} is ${size} bytes; at most ${MAX_BUNDLE_FILE_BYTES} allowed (a bundle is at most ${MAX_BUNDLE_BYTES} bytes encoded)`;
}

/** Tells one refused file's state from the next without reading it (so it is logged once per change). */
function identityOf(size: number, mtimeMs: number): string {
  return `${size}:${mtimeMs}`;
}
