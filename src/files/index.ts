/**
 * Bounded reads of files named from outside: an operator's flags and config
 * entries, `--bundles-dir` files. Never the whole file first, never a FIFO.
 */
export { type BoundedRead, readBounded, readBoundedSync } from "./bounded-read.js";
export {
  CONFIG_FILE_MAX_BYTES,
  type OperatorFile,
  OperatorFileError,
  readOperatorFile,
  readOperatorFileSync,
  TOKEN_FILE_MAX_BYTES,
} from "./operator-file.js";
