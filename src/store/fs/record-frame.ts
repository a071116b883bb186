import { crc32 } from "./crc32.js";

/**
 * The on-disk frame of one log record:
 *
 *   magic u32 | body length u32 | crc32 u32 | seq u64 | body
 *
 * The checksum covers length, seq and body, so a flipped bit anywhere (even in
 * the length) is caught. The magic lets recovery look past a damaged record
 * for later intact ones, which is how a torn tail (nothing valid after it) is
 * told apart from corruption in the middle (valid records after it).
 */
export const FRAME_MAGIC = 0x57524c31; // "WRL1"
export const FRAME_HEADER_BYTES = 20;
/** Larger lengths can only be garbage; bounds allocation during recovery. */
export const MAX_BODY_BYTES = 64 * 1024 * 1024;

/** One decoded record. */
export interface LogRecord {
  seq: bigint;
  body: Uint8Array;
}

/** Result of decoding the frame at one offset. */
export type FrameResult = { kind: "ok"; record: LogRecord; end: number } | { kind: "truncated" } | { kind: "bad"; reason: string };

/** Encodes records into one contiguous buffer, ready for a single write. */
export function encodeFrames(records: readonly LogRecord[]): { bytes: Buffer; sizes: number[] } {
  let total = 0;
  for (const r of records) total += FRAME_HEADER_BYTES + r.body.length;
  const bytes = Buffer.allocUnsafe(total);
  const sizes: number[] = [];
  let pos = 0;
  for (const r of records) {
    bytes.writeUInt32BE(FRAME_MAGIC, pos);
    bytes.writeUInt32BE(r.body.length, pos + 4);
    bytes.writeBigUInt64BE(r.seq, pos + 12);
    bytes.set(r.body, pos + FRAME_HEADER_BYTES);
    const end = pos + FRAME_HEADER_BYTES + r.body.length;
    bytes.writeUInt32BE(frameChecksum(bytes, pos, end), pos + 8);
    sizes.push(end - pos);
    pos = end;
  }
  return { bytes, sizes };
}

/** Decodes the frame starting at `pos` of `buf` (which may end mid-frame). */
export function decodeFrame(buf: Buffer, pos: number): FrameResult {
  if (buf.length - pos < FRAME_HEADER_BYTES) return { kind: "truncated" };
  if (buf.readUInt32BE(pos) !== FRAME_MAGIC) return { kind: "bad", reason: "bad record marker" };
  const length = buf.readUInt32BE(pos + 4);
  if (length > MAX_BODY_BYTES) return { kind: "bad", reason: "impossible record length" };
  const end = pos + FRAME_HEADER_BYTES + length;
  if (end > buf.length) return { kind: "truncated" };
  if (buf.readUInt32BE(pos + 8) !== frameChecksum(buf, pos, end)) {
    return { kind: "bad", reason: "checksum mismatch" };
  }
  return {
    kind: "ok",
    record: { seq: buf.readBigUInt64BE(pos + 12), body: buf.subarray(pos + FRAME_HEADER_BYTES, end) },
    end,
  };
}

/**
 * Finds the next intact frame after a damaged one, scanning for the magic.
 * Returns its offset, or undefined when nothing valid follows.
 */
export function findNextFrame(buf: Buffer, from: number): number | undefined {
  const marker = Buffer.allocUnsafe(4);
  marker.writeUInt32BE(FRAME_MAGIC, 0);
  let at = buf.indexOf(marker, from);
  while (at !== -1) {
    if (decodeFrame(buf, at).kind === "ok") return at;
    at = buf.indexOf(marker, at + 1);
  }
  return undefined;
}

function frameChecksum(buf: Buffer, start: number, end: number): number {
  const lengthCrc = crc32(buf.subarray(start + 4, start + 8));
  return crc32(buf.subarray(start + 12, end), lengthCrc);
}
