import { StoreWriteError } from "../../runtime/index.js";
import { errorCode } from "./disk.js";

/**
 * The data dir is open already: by another store in this process, or by
 * another runtime process (the lock, data-dir-lock.ts). Two stores on one
 * data dir would corrupt its logs; an embedder can tell this apart from a
 * damaged or unwritable dir by class, not by message.
 */
export class DataDirInUseError extends Error {
  override readonly name = "DataDirInUseError";
}

/** The data dir is a regular file, or lies under one: the file store needs a directory. The mkdir error is the cause. */
export class DataDirNotDirectoryError extends Error {
  override readonly name = "DataDirNotDirectoryError";
}

/** mkdir's error for `dir` as a {@link DataDirNotDirectoryError} when a file is in the way; any other error as it is. */
export function notDirectory(dir: string, error: unknown): unknown {
  const code = errorCode(error);
  if (code !== "EEXIST" && code !== "ENOTDIR") return error;
  return new DataDirNotDirectoryError(`the data dir ${dir} is not a directory (a file is in the way); give a directory`, { cause: error });
}

/**
 * The process may not write the data dir: its permissions, a read-only
 * mount, or a file system that takes no directories of ours (procfs). The
 * file system's error is the cause.
 */
export class DataDirNotWritableError extends Error {
  override readonly name = "DataDirNotWritableError";
}

/**
 * A failed write while the data dir is being made or locked, named as the
 * data dir's problem rather than by the file the store was touching: a
 * full disk (what `failed` says could not be written, and a hint), a data
 * dir the process may not write. Any other error as it is.
 */
export function notWritable(dir: string, error: unknown, failed: string): unknown {
  const code = errorCode(error);
  if (code === "ENOSPC" || code === "EDQUOT") {
    return new StoreWriteError(`the data dir ${dir} has no space left (${code}): ${failed}; free space on its disk and start again`, {
      cause: error,
    });
  }
  if (code !== "EACCES" && code !== "EPERM" && code !== "EROFS") return error;
  return new DataDirNotWritableError(
    `the data dir ${dir} cannot be written (${code}); the file store needs a writable data dir: check its owner, mode and mount`,
    { cause: error },
  );
}
