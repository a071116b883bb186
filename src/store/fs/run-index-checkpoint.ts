import { MAX_BODY_BYTES } from "./record-frame.js";
import { RECENT_REQUEST_IDS, type RunIndexState } from "./run-index.js";
import { decodeSnapshot, encodeSnapshot, packFields, unpackFields } from "./snapshot-file.js";

/**
 * `runs/run-index.checkpoint`: a worker's {@link RunIndexState} as of one
 * record of its runs log, so that open reads it plus the records after it
 * instead of every version of every run. It is a snapshot file (one
 * checksummed frame, replaced atomically) whose body is:
 *
 *   header:    last seq u64 | CRC-32 of that record's body u32 | request ids kept u32
 *              | runs u32 | unfinished u32 | request ids u32
 *   latest:    seq u64 per run, by ordinal
 *   run ids:   packed utf-8 fields, by ordinal
 *   unfinished: ordinal u32 each, in restore order
 *   requests:  ordinal u32 each, oldest first
 *   request fields: packed utf-8 fields, request id then fingerprint for each
 *
 * The CRC of the last record ties the checkpoint to its log: open compares
 * it with the log's record of that seq, so a checkpoint of another log (or
 * of a log since restored from an older copy) is never used.
 */
export interface RunIndexCheckpoint {
  state: RunIndexState;
  /** CRC-32 of the body of record `state.lastSeq`. */
  lastCrc: number;
}

const HEADER_BYTES = 28;
const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder("utf-8", { fatal: true });

/** Encodes a checkpoint file; undefined when it would be larger than one frame may be (`maxBytes`, at most the 64 MiB open reads). */
export function encodeRunIndexCheckpoint({ state, lastCrc }: RunIndexCheckpoint, maxBytes = MAX_BODY_BYTES): Buffer | undefined {
  const header = Buffer.alloc(HEADER_BYTES);
  header.writeBigUInt64BE(BigInt(state.lastSeq), 0);
  header.writeUInt32BE(lastCrc, 8);
  header.writeUInt32BE(RECENT_REQUEST_IDS, 12);
  header.writeUInt32BE(state.runIds.length, 16);
  header.writeUInt32BE(state.unfinished.length, 20);
  header.writeUInt32BE(state.requests.length, 24);
  const latest = Buffer.allocUnsafe(state.latest.length * 8);
  for (const [i, seq] of state.latest.entries()) latest.writeBigUInt64BE(BigInt(seq), i * 8);
  const body = packFields([
    header,
    latest,
    packFields(state.runIds.map((id) => utf8.encode(id))),
    u32s(state.unfinished),
    u32s(state.requests.map((r) => r.ordinal)),
    packFields(state.requests.flatMap((r) => [utf8.encode(r.requestId), utf8.encode(r.fingerprint)])),
  ]);
  return body.length > Math.min(maxBytes, MAX_BODY_BYTES) ? undefined : encodeSnapshot(body);
}

/** Decodes a checkpoint file, or says why it cannot be used. */
export function decodeRunIndexCheckpoint(content: Buffer): RunIndexCheckpoint | { problem: string } {
  const decoded = decodeSnapshot(content);
  if ("problem" in decoded) return decoded;
  const [header, latestBytes, runIdBytes, unfinishedBytes, ordinalBytes, requestBytes] = unpackFields(decoded.body, 6) ?? [];
  if (!header || header.length !== HEADER_BYTES || !latestBytes || !runIdBytes || !unfinishedBytes || !ordinalBytes || !requestBytes) {
    return { problem: "malformed body" };
  }
  const head = Buffer.from(header.buffer, header.byteOffset, header.byteLength);
  const kept = head.readUInt32BE(12);
  if (kept !== RECENT_REQUEST_IDS) return { problem: `it remembers ${kept} request ids, this runtime ${RECENT_REQUEST_IDS}` };
  const runs = head.readUInt32BE(16);
  const requests = head.readUInt32BE(24);
  const runIds = unpackFields(runIdBytes, runs);
  const requestFields = unpackFields(requestBytes, requests * 2);
  const latest = readU64s(latestBytes);
  const unfinished = readU32s(unfinishedBytes);
  const ordinals = readU32s(ordinalBytes);
  if (
    !runIds ||
    !requestFields ||
    latest?.length !== runs ||
    unfinished?.length !== head.readUInt32BE(20) ||
    ordinals?.length !== requests
  ) {
    return { problem: "malformed body" };
  }
  try {
    return {
      lastCrc: head.readUInt32BE(8),
      state: {
        lastSeq: Number(head.readBigUInt64BE(0)),
        runIds: runIds.map((id) => fromUtf8.decode(id)),
        latest,
        unfinished,
        requests: ordinals.map((ordinal, i) => ({
          ordinal,
          requestId: fromUtf8.decode(requestFields[2 * i]),
          fingerprint: fromUtf8.decode(requestFields[2 * i + 1]),
        })),
      },
    };
  } catch {
    return { problem: "a name in it is not UTF-8" };
  }
}

function u32s(values: readonly number[]): Buffer {
  const buf = Buffer.allocUnsafe(values.length * 4);
  for (const [i, value] of values.entries()) buf.writeUInt32BE(value, i * 4);
  return buf;
}

function readU32s(bytes: Uint8Array): number[] | undefined {
  if (bytes.length % 4 !== 0) return undefined;
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return Array.from({ length: bytes.length / 4 }, (_, i) => buf.readUInt32BE(i * 4));
}

function readU64s(bytes: Uint8Array): number[] | undefined {
  if (bytes.length % 8 !== 0) return undefined;
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return Array.from({ length: bytes.length / 8 }, (_, i) => Number(buf.readBigUInt64BE(i * 8)));
}
