import { open } from "node:fs/promises";
import * as path from "node:path";
import type { Disk } from "./disk.js";
import type { OffsetList } from "./offset-list.js";

/** One segment file of a log (`<first seq>.log`, plus `<first seq>.idx` once sealed). */
export interface Segment {
  firstSeq: bigint;
  count: number;
  size: number;
  /** Record offsets, kept only for the active (last) segment. */
  offsets?: OffsetList;
}

/**
 * What recovery, the reader and the group commit of one SegmentedLog share.
 * `segments` is only ever changed in place (pushed, shifted), so a reader
 * holding a copy can tell when a segment it walks was pruned.
 */
export interface LogState {
  readonly segments: Segment[];
  /** Last seq made durable. */
  durableSeq: bigint;
  /** Set when open or a read found corruption; the log is then read-only. */
  damage: string | undefined;
  /**
   * Set when open found corruption that cut the log short: `durableSeq` is
   * then the last record before the damage, and the acknowledged records
   * after it cannot be read.
   */
  cutByDamage?: true;
  /** Whether the active (last) segment's file exists on disk. */
  activeCreated: boolean;
}

export function logName(dir: string, firstSeq: bigint): string {
  return path.join(dir, `${firstSeq.toString().padStart(20, "0")}.log`);
}

export function indexName(dir: string, firstSeq: bigint): string {
  return path.join(dir, `${firstSeq.toString().padStart(20, "0")}.idx`);
}

/** Cuts a segment back to `size` (a record boundary) and makes that durable. */
export async function truncateSegment(disk: Disk, rel: string, size: number): Promise<void> {
  const fh = await open(disk.abs(rel), "r+");
  try {
    await fh.truncate(size);
    await disk.sync(fh, rel);
  } finally {
    await fh.close();
  }
}

export function isNotFound(error: unknown): boolean {
  return error instanceof Error && "code" in error && error.code === "ENOENT";
}
