import { closeSync, constants, fstatSync, openSync, readSync } from "node:fs";
import { open } from "node:fs/promises";
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
 * One `--bundles-dir` file read within {@link MAX_BUNDLE_FILE_BYTES}: its
 * text, or why it was not read (over the bound, or not a regular file such
 * as a FIFO, which a plain read would wait on forever). The size is checked
 * on the open file and the read stops one byte past the bound, so a file
 * growing meanwhile cannot be read whole either. I/O errors are thrown.
 */
export type BundleFileRead = { text: string } | { refused: string; identity: string };

/** Opened without blocking: a FIFO must not hold the read until someone writes to it. */
const OPEN_FLAGS = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0);

/** Reads `name` in `path` (sync: the start-up load). */
export function readBundleFileSync(path: string, name: string): BundleFileRead {
  const fd = openSync(path, OPEN_FLAGS);
  try {
    const stat = fstatSync(fd);
    const refused = refusal(name, stat.isFile(), stat.size);
    if (refused !== undefined) return { refused, identity: identityOf(stat.size, stat.mtimeMs) };
    const buffer = Buffer.alloc(Math.min(stat.size, MAX_BUNDLE_FILE_BYTES) + 1);
    let length = 0;
    for (;;) {
      const read = readSync(fd, buffer, length, buffer.length - length, null);
      if (read === 0) break;
      length += read;
      if (length === buffer.length) break;
    }
    return finished(name, buffer, length, stat.mtimeMs);
  } finally {
    closeSync(fd);
  }
}

/** Reads `name` in `path` (async: the re-reads while serving). */
export async function readBundleFile(path: string, name: string): Promise<BundleFileRead> {
  const handle = await open(path, OPEN_FLAGS);
  try {
    const stat = await handle.stat();
    const refused = refusal(name, stat.isFile(), stat.size);
    if (refused !== undefined) return { refused, identity: identityOf(stat.size, stat.mtimeMs) };
    const buffer = Buffer.alloc(Math.min(stat.size, MAX_BUNDLE_FILE_BYTES) + 1);
    let length = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, null);
      if (bytesRead === 0) break;
      length += bytesRead;
      if (length === buffer.length) break;
    }
    return finished(name, buffer, length, stat.mtimeMs);
  } finally {
    await handle.close();
  }
}

function refusal(name: string, regular: boolean, size: number): string | undefined {
  if (!regular) return `--bundles-dir file ${name} is not a regular file`;
  return size > MAX_BUNDLE_FILE_BYTES ? overBound(name, String(size)) : undefined;
}

/** What was read: the text, or a refusal when the file grew past the bound since its size was taken. */
function finished(name: string, buffer: Buffer, length: number, mtimeMs: number): BundleFileRead {
  if (length > MAX_BUNDLE_FILE_BYTES)
    return { refused: overBound(name, `over ${MAX_BUNDLE_FILE_BYTES}`), identity: identityOf(length, mtimeMs) };
  return { text: buffer.toString("utf8", 0, length) };
}

function overBound(name: string, size: string): string {
  return `--bundles-dir file ${name} is ${size} bytes; at most ${MAX_BUNDLE_FILE_BYTES} allowed (a bundle is at most ${MAX_BUNDLE_BYTES} bytes encoded)`;
}

/** Tells one refused file's state from the next without reading it (so it is logged once per change). */
function identityOf(size: number, mtimeMs: number): string {
  return `${size}:${mtimeMs}`;
}
