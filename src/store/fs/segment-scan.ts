import { OffsetList } from "./offset-list.js";
import { decodeFrame, findNextFrame } from "./record-frame.js";

/** What a full scan of one segment found. */
export interface SegmentScan {
  /** Start offset of every good record, in order. */
  offsets: OffsetList;
  /** End of the last good record of the unbroken prefix. */
  goodEnd: number;
  /**
   * `torn`: nothing valid follows the damage, so it is an unfinished write
   * and the file may be truncated to `goodEnd`. `corrupt`: intact records
   * follow the damage, so acknowledged data is damaged and must not be cut.
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
    const kind = findNextFrame(buf, pos + 1) === undefined ? "torn" : "corrupt";
    return { offsets, goodEnd: pos, damage: { kind, offset: pos, reason } };
  }
  return { offsets, goodEnd: pos };
}
