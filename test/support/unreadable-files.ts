import { execFileSync } from "node:child_process";
import { closeSync, openSync, truncateSync } from "node:fs";

/**
 * Files an operator may name by mistake that a plain whole-file read cannot
 * survive: a FIFO (the read waits for a writer forever) and a sparse file
 * far past any bound (read whole, it costs its size in memory). Each is made
 * at `path`, which is returned.
 */
export function fifoAt(path: string): string {
  execFileSync("mkfifo", ["-m", "600", path]);
  return path;
}

/** A sparse file of `bytes` (no disk blocks), mode 0600 like a secret. */
export function sparseFileAt(path: string, bytes: number): string {
  closeSync(openSync(path, "w", 0o600));
  truncateSync(path, bytes);
  return path;
}

/** Past every operator file bound, and past Node's own 2 GiB read limit. */
export const HUGE_FILE_BYTES = 3 * 1024 ** 3;
