import { type BoundedRead, readBounded, readBoundedSync } from "./bounded-read.js";

/** Largest token file read (`--token-file`, `--discover-token-file`, a `backend.json` tokenFile): a token is a line. */
export const TOKEN_FILE_MAX_BYTES = 64 * 1024;

/**
 * Largest JSON config, secrets, profiles or PEM file read (`--config`,
 * `--secrets-file`, `--profiles`, `--tls-cert`, `--tls-key`, a CA file):
 * far above any such file a person writes (a certificate chain is a few
 * KiB; a profiles file holds profiles a bundle's 256 KiB bound limits), the
 * same 1 MiB a `--bundles-dir` file may have.
 */
export const CONFIG_FILE_MAX_BYTES = 1024 * 1024;

/**
 * A file an operator named that is not read: not a regular file, or past its
 * bound. The message names what (the flag or config entry), the file and
 * why; callers turn it into their own usage error.
 */
export class OperatorFileError extends Error {
  override readonly name = "OperatorFileError";
}

/** What a start-up read of an operator's file gave: its bytes and the mode of the file read. */
export interface OperatorFile {
  bytes: Buffer;
  mode: number;
}

/**
 * Reads a file an operator names (`what`: the flag, e.g. `--token-file`)
 * within `maxBytes`, so that a huge file costs no memory and a FIFO cannot
 * hang start-up: either is an {@link OperatorFileError}. I/O errors (ENOENT,
 * EACCES) are thrown as they are, for the caller's "cannot read" message.
 */
export function readOperatorFileSync(what: string, path: string, maxBytes: number): OperatorFile {
  return operatorFile(what, path, maxBytes, readBoundedSync(path, maxBytes));
}

/** {@link readOperatorFileSync} for an async start-up step. */
export async function readOperatorFile(what: string, path: string, maxBytes: number): Promise<OperatorFile> {
  return operatorFile(what, path, maxBytes, await readBounded(path, maxBytes));
}

function operatorFile(what: string, path: string, maxBytes: number, read: BoundedRead): OperatorFile {
  switch (read.kind) {
    case "read":
      return { bytes: read.bytes, mode: read.mode };
    case "not-regular":
      throw new OperatorFileError(`${what} ${path} is not a regular file`);
    case "too-large":
      throw new OperatorFileError(`${what} ${path} is ${read.grew ? `over ${maxBytes}` : read.size} bytes; at most ${maxBytes} allowed`);
  }
}
