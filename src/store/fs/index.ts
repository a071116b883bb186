/**
 * The crash-safe file store behind `worker-runtime serve --data-dir`. Only
 * the factory, its options and the fault hook type are public; the on-disk
 * format is an implementation detail.
 */
export { createFileStore, type FileStore, type FileStoreOptions } from "./file-store.js";
export type { FileStoreFaults } from "./disk.js";
export type { FileStoreStats } from "./file-store-stats.js";
export { StoreCorruptionError } from "./store-corruption-error.js";
export { DataDirInUseError, DataDirNotDirectoryError, DataDirNotWritableError } from "./data-dir-errors.js";
export { DataDirFormatError } from "./data-dir-format.js";
