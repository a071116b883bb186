import { type FileHandle, open } from "node:fs/promises";
import type { FileStoreStats } from "./file-store-stats.js";
import { readRange } from "./read-range.js";

/**
 * The index of a sealed segment: record i of the segment starts at byte
 * `offsets[i]`; one extra offset marks the end. Fixed-size entries let a
 * read fetch just the slice it needs, so locating the last N records costs
 * O(N) whatever the size of the log. Layout:
 *
 *   magic u32 | count u32 | offset u32 × (count + 1)
 *
 * It is written once, atomically, when the segment is sealed; the active
 * segment's offsets live in memory (rebuilt by the recovery scan).
 */
const INDEX_MAGIC = 0x57524931; // "WRI1"
const HEADER_BYTES = 8;

/** Encodes a sealed segment's index. */
export function encodeSegmentIndex(offsets: ArrayLike<number>, size: number): Buffer {
  const buf = Buffer.allocUnsafe(HEADER_BYTES + (offsets.length + 1) * 4);
  buf.writeUInt32BE(INDEX_MAGIC, 0);
  buf.writeUInt32BE(offsets.length, 4);
  for (let i = 0; i < offsets.length; i++) buf.writeUInt32BE(offsets[i] ?? 0, HEADER_BYTES + i * 4);
  buf.writeUInt32BE(size, HEADER_BYTES + offsets.length * 4);
  return buf;
}

/**
 * Reads the index header and checks it against the segment's size. Returns
 * the record count, or undefined when the index is missing or inconsistent
 * (the caller then rebuilds it by scanning the segment).
 */
export async function readSegmentIndexCount(absPath: string, segmentSize: number, stats: FileStoreStats): Promise<number | undefined> {
  let fh: FileHandle;
  try {
    fh = await open(absPath, "r");
  } catch {
    return undefined;
  }
  try {
    const header = await readRange(fh, 0, HEADER_BYTES, stats);
    if (header.length < HEADER_BYTES || header.readUInt32BE(0) !== INDEX_MAGIC) return undefined;
    const count = header.readUInt32BE(4);
    const last = await readRange(fh, HEADER_BYTES + count * 4, 4, stats);
    if (last.length < 4 || last.readUInt32BE(0) !== segmentSize) return undefined;
    const { size } = await fh.stat();
    return size === HEADER_BYTES + (count + 1) * 4 ? count : undefined;
  } finally {
    await fh.close();
  }
}

/** Reads offsets[from .. from + n] (n + 1 values, the last one an end offset). */
export async function readSegmentIndexSlice(absPath: string, from: number, n: number, stats: FileStoreStats): Promise<number[]> {
  const fh = await open(absPath, "r");
  try {
    const buf = await readRange(fh, HEADER_BYTES + from * 4, (n + 1) * 4, stats);
    const offsets: number[] = [];
    for (let i = 0; i + 4 <= buf.length; i += 4) offsets.push(buf.readUInt32BE(i));
    return offsets;
  } finally {
    await fh.close();
  }
}
