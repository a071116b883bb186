import { readBounded } from "../../files/index.js";
import { decodeFrame, encodeFrames, FRAME_HEADER_BYTES, MAX_BODY_BYTES } from "./record-frame.js";

/**
 * A snapshot file is exactly one checksummed frame (see record-frame.ts)
 * whose seq field holds the format version. Anything else — short, long,
 * wrong checksum, unknown version — is reported as a readable reason.
 */
export const SNAPSHOT_FORMAT = 1n;

/** Encodes a snapshot body into file content. */
export function encodeSnapshot(body: Uint8Array): Buffer {
  return encodeFrames([{ seq: SNAPSHOT_FORMAT, body }]).bytes;
}

/** Decodes file content, or explains why it is not a valid snapshot. */
export function decodeSnapshot(content: Buffer): { body: Uint8Array } | { problem: string } {
  const frame = decodeFrame(content, 0);
  if (frame.kind === "truncated") return { problem: "file is cut short" };
  if (frame.kind === "bad") return { problem: frame.reason };
  if (frame.end !== content.length) return { problem: "unexpected bytes after the snapshot" };
  if (frame.record.seq !== SNAPSHOT_FORMAT) return { problem: `unknown snapshot format ${frame.record.seq}` };
  return { body: frame.record.body };
}

/** The largest a snapshot file can be: one frame of the largest body. */
export const MAX_SNAPSHOT_FILE_BYTES = FRAME_HEADER_BYTES + MAX_BODY_BYTES;

/**
 * A snapshot file's content, or why it cannot be one without reading it: a
 * file past {@link MAX_SNAPSHOT_FILE_BYTES} (or not a regular file) is
 * damaged, and reading it whole could take the process's memory at start-up.
 * I/O errors (ENOENT included) are thrown as `readFile` throws them.
 */
export async function readSnapshotFile(file: string): Promise<{ content: Buffer } | { problem: string }> {
  const read = await readBounded(file, MAX_SNAPSHOT_FILE_BYTES);
  if (read.kind === "read") return { content: read.bytes };
  if (read.kind === "not-regular") return { problem: "it is not a regular file" };
  return { problem: `the file is ${read.size} bytes, larger than any snapshot (${MAX_SNAPSHOT_FILE_BYTES})` };
}

/** Concatenates length-prefixed fields (u32 length + bytes each). */
export function packFields(fields: readonly Uint8Array[]): Buffer {
  const total = fields.reduce((n, f) => n + 4 + f.length, 0);
  const out = Buffer.allocUnsafe(total);
  let pos = 0;
  for (const field of fields) {
    out.writeUInt32BE(field.length, pos);
    out.set(field, pos + 4);
    pos += 4 + field.length;
  }
  return out;
}

/** Splits what {@link packFields} produced; undefined if malformed. */
export function unpackFields(body: Uint8Array, count: number): Uint8Array[] | undefined {
  const buf = Buffer.from(body.buffer, body.byteOffset, body.byteLength);
  const fields: Uint8Array[] = [];
  let pos = 0;
  for (let i = 0; i < count; i++) {
    if (pos + 4 > buf.length) return undefined;
    const length = buf.readUInt32BE(pos);
    if (pos + 4 + length > buf.length) return undefined;
    fields.push(buf.subarray(pos + 4, pos + 4 + length));
    pos += 4 + length;
  }
  return pos === buf.length ? fields : undefined;
}
