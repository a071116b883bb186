import type { Disk } from "./disk.js";
import type { FileStoreStats } from "./file-store-stats.js";
import type { LogRecord } from "./record-frame.js";

/** Options for {@link SegmentedLog}. */
export interface SegmentedLogInit {
  disk: Disk;
  /** Directory of the log, relative to the data dir; must already exist. */
  dir: string;
  /** A segment is sealed and a new one started once it reaches this size. */
  segmentBytes: number;
  /** Keep at least this many newest records; older whole segments are deleted. */
  retainRecords?: number;
  /**
   * Keep at least this many bytes of newest records; older whole segments
   * are deleted past this too (a segment goes once either bound lets it).
   */
  retainBytes?: number;
  stats: FileStoreStats;
  /**
   * Called once when a read finds a damaged record; the log is read-only
   * from then on. The message names the file relative to the data dir;
   * `hostDetail` says the same with the absolute file (for the operator's log).
   */
  onCorruption?: (message: string, hostDetail: string) => void;
  /** Called with each batch once it is durable, before its appends resolve. */
  onDurable?: (records: readonly LogRecord[]) => void;
  /**
   * Called as each append is accepted; the promise it returns (if any) is
   * awaited before that append is written. It lets a log promise that other
   * writes accepted before it are durable: if the promise rejects, the
   * append and everything after it are refused without being written, so a
   * record never becomes durable on top of a write that failed.
   */
  barrier?: () => Promise<void> | undefined;
}

/** A problem found while opening a log. */
export interface LogProblem {
  kind: "torn" | "corrupt";
  /** File relative to the data dir. */
  file: string;
  detail: string;
}
