import { OffsetList } from "./offset-list.js";
import { decodeFrame, findNextFrame } from "./record-frame.js";

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
 * Checks every record of a segment: frame checksum and seq continuity from
 * `firstSeq`. Stops at the first bad record and classifies it.
 */
export function scanSegment(buf: Buffer, firstSeq: bigint, onRecord: () => void): SegmentScan {
  const offsets = new OffsetList();
  let pos = 0;
  let expected = firstSeq;
  while (pos < buf.length) {
    const frame = decodeFrame(buf, pos);
    if (frame.kind === "ok" && frame.record.seq === expected) {
      onRecord();
      offsets.push(pos);
      pos = frame.end;
      expected++;
      continue;
    }
    const reason =
      frame.kind === "ok"
        ? `record seq ${frame.record.seq} where ${expected} was expected`
        : frame.kind === "truncated"
          ? "record cut short"
          : frame.reason;
    const kind = continuesAfterDamage(buf, pos + 1, expected) ? "corrupt" : "torn";
    return { offsets, goodEnd: pos, damage: { kind, offset: pos, reason } };
  }
  return { offsets, goodEnd: pos };
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
