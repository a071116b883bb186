import type { FileHandle } from "node:fs/promises";
import type { FileStoreStats } from "./file-store-stats.js";
import { OffsetList } from "./offset-list.js";
import { readRange } from "./read-range.js";
import { decodeFrame, FRAME_HEADER_BYTES, FRAME_MAGIC, findNextFrame, MAX_BODY_BYTES } from "./record-frame.js";

/** What a full scan of one segment found. */
export interface SegmentScan {
  /** Start offset of every good record, in order. */
  offsets: OffsetList;
  /** End of the last good record of the unbroken prefix. */
  goodEnd: number;
  /**
   * `torn`: nothing after the damage continues the log, so it is an
   * unfinished write and the file may be truncated to `goodEnd`. `corrupt`:
   * records that continue the log follow the damage, so acknowledged data
   * is damaged and must not be cut.
   */
  damage?: { kind: "torn" | "corrupt"; offset: number; reason: string };
}

/**
 * Bytes a scan reads at a time. Open scans the logs of many workers at once
 * (32 by default), so a scan holds this much (or one longer record), never
 * a whole segment (8 MiB by default).
 */
export const SCAN_CHUNK_BYTES = 256 * 1024;

/**
 * Checks every record of a segment file of `size` bytes: frame checksum and
 * seq continuity from `firstSeq`, reading it in chunks. Stops at the first
 * bad record and classifies it, reading the rest of the file for that
 * (damage is rare; the rest holds whatever follows the damage).
 */
export async function scanSegment(fh: FileHandle, size: number, firstSeq: bigint, stats: FileStoreStats): Promise<SegmentScan> {
  const offsets = new OffsetList();
  let pos = 0;
  let expected = firstSeq;
  let chunk: Buffer = Buffer.alloc(0);
  let chunkStart = 0;
  while (pos < size) {
    let frame = decodeFrame(chunk, pos - chunkStart);
    // The chunk ends inside this record: read on from its start, the whole record at least (a second
    // read when the first one only showed its header).
    for (let reads = 0; frame.kind === "truncated" && chunkStart + chunk.length < size && reads < 2; reads++) {
      chunk = await readRange(fh, pos, Math.min(size - pos, Math.max(SCAN_CHUNK_BYTES, frameBytes(chunk, pos - chunkStart))), stats);
      chunkStart = pos;
      frame = decodeFrame(chunk, 0);
    }
    if (frame.kind === "ok" && frame.record.seq === expected) {
      stats.recordsRead++;
      offsets.push(pos);
      pos = chunkStart + frame.end;
      expected++;
      continue;
    }
    const reason =
      frame.kind === "ok"
        ? `record seq ${frame.record.seq} where ${expected} was expected`
        : frame.kind === "truncated"
          ? "record cut short"
          : frame.reason;
    const rest = await readRange(fh, pos, size - pos, stats);
    const kind = continuesAfterDamage(rest, 1, expected) ? "corrupt" : "torn";
    return { offsets, goodEnd: pos, damage: { kind, offset: pos, reason } };
  }
  return { offsets, goodEnd: pos };
}

/** Length of the frame starting at `at` as its header says (0 when the header is cut off or not a frame's). */
function frameBytes(buf: Buffer, at: number): number {
  if (buf.length - at < FRAME_HEADER_BYTES || buf.readUInt32BE(at) !== FRAME_MAGIC) return 0;
  return FRAME_HEADER_BYTES + Math.min(buf.readUInt32BE(at + 4), MAX_BODY_BYTES);
}

/**
 * True when, somewhere after `from`, an unbroken chain of intact records
 * with seqs beyond `expected` (each one more than the last) runs exactly to
 * the end of the segment. Only that proves later writes were made on top of
 * the damaged record. Intact frames that do not continue the log (stale
 * blocks after a power loss, an old copy of a record) are not evidence, so a
 * torn tail followed by such leftovers is still truncated rather than
 * quarantining a healthy worker.
 */
function continuesAfterDamage(buf: Buffer, from: number, expected: bigint): boolean {
  for (let at = findNextFrame(buf, from); at !== undefined; at = findNextFrame(buf, at + 1)) {
    const first = decodeFrame(buf, at);
    if (first.kind !== "ok" || first.record.seq <= expected) continue;
    let pos = first.end;
    let seq = first.record.seq;
    while (pos < buf.length) {
      const frame = decodeFrame(buf, pos);
      if (frame.kind !== "ok" || frame.record.seq !== seq + 1n) break;
      seq++;
      pos = frame.end;
    }
    if (pos === buf.length) return true;
  }
  return false;
}
