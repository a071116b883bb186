/**
 * Bounds on what tools read, produce and run. Every bound, when hit, is told
 * to the model in the tool result, so it never mistakes a cut listing or
 * file for the whole thing.
 */
export interface ToolLimits {
  /** Largest tool result the model sees, in UTF-8 bytes. */
  maxOutputBytes: number;
  /** Largest slice of a file one read_file returns; never more than fits `maxOutputBytes` with its note. */
  maxReadBytes: number;
  /** Largest content one write_file/edit_file may write. */
  maxWriteBytes: number;
  /** Command output kept (stdout and stderr together). */
  maxCommandOutputBytes: number;
  /** Command timeout when the model names none. */
  defaultCommandTimeoutMs: number;
  /** Longest command timeout the model may ask for. */
  maxCommandTimeoutMs: number;
  /** Entries one list_files returns. */
  maxListEntries: number;
  /** Matches one search_files returns. */
  maxSearchMatches: number;
  /** Files larger than this are skipped by search_files. */
  maxSearchFileBytes: number;
  /** Files one search_files reads before it stops. */
  maxSearchFiles: number;
  /** Bytes one search_files reads, all files together, before it stops. */
  maxSearchTotalBytes: number;
  /** Directory entries one search_files or list_files reads, all directories together, before it stops. */
  maxWalkEntries: number;
  /** Directory levels below its start one search_files or recursive list_files descends. */
  maxWalkDepth: number;
}

/** Defaults sized for a model context of a few tens of thousands of tokens. */
export const DEFAULT_TOOL_LIMITS: ToolLimits = {
  maxOutputBytes: 32 * 1024,
  maxReadBytes: 64 * 1024,
  maxWriteBytes: 1024 * 1024,
  maxCommandOutputBytes: 32 * 1024,
  defaultCommandTimeoutMs: 60_000,
  maxCommandTimeoutMs: 10 * 60_000,
  maxListEntries: 500,
  maxSearchMatches: 200,
  maxSearchFileBytes: 1024 * 1024,
  maxSearchFiles: 5_000,
  maxSearchTotalBytes: 64 * 1024 * 1024,
  maxWalkEntries: 50_000,
  maxWalkDepth: 32,
};
