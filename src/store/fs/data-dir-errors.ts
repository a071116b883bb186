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
