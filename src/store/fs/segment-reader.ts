import { open, type FileHandle } from "node:fs/promises";
import { readRange } from "./read-range.js";
import { decodeFrame, FRAME_HEADER_BYTES, type LogRecord } from "./record-frame.js";
import { indexName, isNotFound, logName, type LogState, type Segment } from "./segment.js";
import { readSegmentIndexSlice } from "./segment-index.js";
import type { SegmentedLogInit } from "./segmented-log-init.js";
import { StoreCorruptionError } from "./store-corruption-error.js";

/**
 * The read side of a SegmentedLog: durable records by seq, from the active
 * segment's in-memory offsets or a sealed segment's index. A record that
 * fails its check makes the log read-only and is reported once.
 */
export class SegmentReader {
  constructor(
    private readonly init: SegmentedLogInit,
    private readonly state: LogState,
  ) {}

  /**
   * Durable records with seq in [from, from + count), clipped to what is
   * retained. Walks a copy of the segment list, since pruning may drop
   * segments while a read awaits I/O. If a segment vanished under the read,
   * the records already read are returned (they are contiguous), or, when
   * none were, the lookup restarts at the new earliest seq. Stops early past
   * `maxBytes` of frames (at least one record is returned).
   */
  async read(from: bigint, count: number, maxBytes = Number.POSITIVE_INFINITY): Promise<LogRecord[]> {
    let budget = maxBytes;
    let segments = this.state.segments.slice();
    let seq = maxSeq(from, earliestOf(segments, this.state.durableSeq));
    const end = seq + BigInt(Math.max(0, count));
    const records: LogRecord[] = [];
    let i = segmentIndexOf(segments, seq);
    while (i < segments.length && seq < end && seq <= this.state.durableSeq) {
      const segment = segments[i++];
      if (segment === undefined) break;
      const segEnd = segment.firstSeq + BigInt(segment.count);
      const stop = end < segEnd ? end : segEnd;
      if (seq < segment.firstSeq) break;
      if (stop <= seq) continue;
      const wanted = Number(stop - seq);
      const got = await this.readFromSegment(segment, Number(seq - segment.firstSeq), wanted, budget);
      if (got === undefined) {
        if (records.length > 0) break;
        segments = this.state.segments.slice();
        seq = maxSeq(seq, earliestOf(segments, this.state.durableSeq));
        i = segmentIndexOf(segments, seq);
        continue;
      }
      records.push(...got);
      seq += BigInt(got.length);
      for (const record of got) budget -= FRAME_HEADER_BYTES + record.body.length;
      if (got.length < wanted || budget <= 0) break;
    }
    return records;
  }

  /**
   * Reads n records starting at index `from` of a segment, fewer if they
   * exceed `maxBytes` (one at least); undefined if it was pruned meanwhile.
   */
  private async readFromSegment(segment: Segment, from: number, wanted: number, maxBytes: number): Promise<LogRecord[] | undefined> {
    const { disk, stats } = this.init;
    const rel = logName(this.init.dir, segment.firstSeq);
    let offsets: number[];
    let fh: FileHandle;
    try {
      offsets = await readOffsets(this.init, segment, from, wanted);
      fh = await open(disk.abs(rel), "r");
    } catch (error) {
      if (isNotFound(error) && !this.state.segments.includes(segment)) return undefined;
      throw error;
    }
    try {
      // A sealed segment's index is trusted at open by its header and end
      // offset only: offsets that cannot frame records are damage, and are
      // never used to size a read (one bad offset could ask for gigabytes).
      if (!framesRecords(offsets, wanted, segment.size)) {
        throw this.damaged(rel, `the index of records ${from}..${from + wanted - 1} is damaged`);
      }
      const n = recordsWithin(offsets, wanted, maxBytes);
      const start = offsets[0] ?? 0;
      const end = offsets[n] ?? start;
      const buf = await readRange(fh, start, end - start, stats);
      const records: LogRecord[] = [];
      let pos = 0;
      for (let i = 0; i < n; i++) {
        const frame = decodeFrame(buf, pos);
        const expected = segment.firstSeq + BigInt(from + i);
        if (frame.kind !== "ok" || frame.record.seq !== expected) throw this.damaged(rel, `record ${expected} is damaged`);
        stats.recordsRead++;
        records.push(frame.record);
        pos = frame.end;
      }
      return records;
    } finally {
      await fh.close();
    }
  }

  /** Makes the log read-only and reports the damage in file `rel` once; returns the error for the read. */
  private damaged(rel: string, problem: string): StoreCorruptionError {
    const message = `${rel}: ${problem}`;
    if (this.state.damage === undefined) {
      this.state.damage = message;
      this.init.onCorruption?.(message, `${this.init.disk.abs(rel)}: ${problem}`);
    }
    return new StoreCorruptionError(message);
  }
}

/** How many of the n records `offsets` delimit fit in `maxBytes` (one at least). */
function recordsWithin(offsets: readonly number[], n: number, maxBytes: number): number {
  const start = offsets[0] ?? 0;
  let k = 1;
  while (k < n && (offsets[k + 1] ?? 0) - start <= maxBytes) k++;
  return k;
}

/** True when `offsets` (n + 1 values) can delimit n records inside a segment of `size` bytes. */
function framesRecords(offsets: readonly number[], n: number, size: number): boolean {
  if (offsets.length !== n + 1) return false;
  for (let i = 0; i < n; i++) {
    if ((offsets[i + 1] ?? 0) - (offsets[i] ?? 0) < FRAME_HEADER_BYTES) return false;
  }
  return (offsets[n] ?? 0) <= size;
}

/** Offsets of records [from, from + n] of a segment (n + 1 values; the last is an end offset). */
export async function readOffsets(init: SegmentedLogInit, segment: Segment, from: number, n: number): Promise<number[]> {
  if (segment.offsets) {
    const slice = segment.offsets.slice(from, from + n + 1);
    if (slice.length === n) slice.push(segment.size);
    return slice;
  }
  return readSegmentIndexSlice(init.disk.abs(indexName(init.dir, segment.firstSeq)), from, n, init.stats);
}

/** Index of the last segment starting at or before `seq` (0 when none does). */
function segmentIndexOf(segments: readonly Segment[], seq: bigint): number {
  let lo = 0;
  let hi = segments.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    const segment = segments[mid];
    if (segment && segment.firstSeq <= seq) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

function earliestOf(segments: readonly Segment[], durableSeq: bigint): bigint {
  return segments[0]?.firstSeq ?? durableSeq + 1n;
}

function maxSeq(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}
