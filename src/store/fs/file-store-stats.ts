/**
 * Counters the file store keeps so tests and benches can check costs
 * (bytes read for a tail read, fsyncs per append) without timing anything.
 */
export interface FileStoreStats {
  /** Bytes read from log and index files, including recovery scans. */
  bytesRead: number;
  /** Log records decoded (frame checked) by reads and recovery. */
  recordsRead: number;
  /** fdatasync calls made for log appends. */
  logSyncs: number;
  /** Bytes of the largest single read from a log or index file: what one read holds in memory at once. */
  largestReadBytes: number;
}

/** Fresh zeroed counters. */
export function createFileStoreStats(): FileStoreStats {
  return { bytesRead: 0, recordsRead: 0, logSyncs: 0, largestReadBytes: 0 };
}
