import { decodeFrame, encodeFrames } from "./record-frame.js";
import { RECENT_REQUEST_IDS, type RunIndexState } from "./run-index.js";

/**
 * `runs/run-index.checkpoint`: a worker's {@link RunIndexState} as of one
 * record of its runs log, so that open reads it plus the records after it
 * instead of every version of every run. It is a sequence of checksummed
 * frames (record-frame.ts) numbered from {@link CHECKPOINT_FORMAT} on, each
 * body at most a bounded size, so that it is encoded one frame per turn of
 * the event loop and has no size limit (a single frame may not exceed
 * 64 MiB). Bodies:
 *
 *   head:  last seq u64 | CRC-32 of that record's body u32 | request ids kept u32
 *          | runs u32 | unfinished u32 | request ids u32
 *   then frames of one section each, the section's kind u8 first, then entries:
 *     runs (by ordinal):          seq u64 | id length u32 | id utf-8
 *     unfinished (restore order): ordinal u32
 *     requests (oldest first):    ordinal u32 | id length u32 | id | fingerprint length u32 | fingerprint
 *
 * The file is complete when the head's counts are met and nothing follows.
 * The CRC of the last record ties the checkpoint to its log: open compares
 * it with the log's record of that seq, so a checkpoint of another log (or
 * of a log since restored from an older copy) is never used.
 */
export interface RunIndexCheckpoint {
  state: RunIndexState;
  /** CRC-32 of the body of record `state.lastSeq`. */
  lastCrc: number;
}

/**
 * What a checkpoint is encoded from: the index as of one record, whose runs
 * are read lazily (a live index hands out the runs of a frozen view,
 * run-index.ts), so encoding one frame reads only that frame's runs.
 */
export interface RunIndexSource {
  lastSeq: number;
  lastCrc: number;
  runCount: number;
  /** Run id and seq of its latest version, by ordinal; exactly `runCount` of them. */
  runs(): Iterator<readonly [string, number]>;
  unfinished: readonly number[];
  requests: ReadonlyArray<{ requestId: string; ordinal: number; fingerprint: string }>;
}

/** Seq of the head frame; a checkpoint of the single-frame format (1) is not read. */
export const CHECKPOINT_FORMAT = 2n;

const HEAD_BYTES = 28;
const SECTION = { runs: 1, unfinished: 2, requests: 3 } as const;
const fromUtf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Yields the checkpoint's file content one frame at a time, each body at most
 * `frameBytes` (or one entry, if an entry is larger): the caller writes one
 * and lets the event loop turn before asking for the next.
 */
export function* runIndexCheckpointFrames(source: RunIndexSource, frameBytes: number): Generator<Buffer, void, undefined> {
  const head = Buffer.alloc(HEAD_BYTES);
  head.writeBigUInt64BE(BigInt(source.lastSeq), 0);
  head.writeUInt32BE(source.lastCrc, 8);
  head.writeUInt32BE(RECENT_REQUEST_IDS, 12);
  head.writeUInt32BE(source.runCount, 16);
  head.writeUInt32BE(source.unfinished.length, 20);
  head.writeUInt32BE(source.requests.length, 24);
  let seq = CHECKPOINT_FORMAT;
  const frame = (body: Buffer) => encodeFrames([{ seq: seq++, body }]).bytes;
  yield frame(head);
  const runs = source.runs();
  let run = runs.next();
  yield* sectionFrames(SECTION.runs, frameBytes, frame, () => {
    if (run.done) return undefined;
    const [id, runSeq] = run.value;
    run = runs.next();
    const entry = Buffer.allocUnsafe(12 + Buffer.byteLength(id, "utf8"));
    entry.writeBigUInt64BE(BigInt(runSeq), 0);
    entry.writeUInt32BE(entry.length - 12, 8);
    entry.write(id, 12, "utf8");
    return entry;
  });
  let u = 0;
  yield* sectionFrames(SECTION.unfinished, frameBytes, frame, () => {
    const ordinal = source.unfinished[u++];
    return ordinal === undefined ? undefined : u32(ordinal);
  });
  let r = 0;
  yield* sectionFrames(SECTION.requests, frameBytes, frame, () => {
    const request = source.requests[r++];
    if (!request) return undefined;
    return Buffer.concat([u32(request.ordinal), text(request.requestId), text(request.fingerprint)]);
  });
}

/** Encodes a whole checkpoint at once (tests, and hand-made checkpoints). */
export function encodeRunIndexCheckpoint({ state, lastCrc }: RunIndexCheckpoint, frameBytes = 1024 * 1024): Buffer {
  const source: RunIndexSource = {
    lastSeq: state.lastSeq,
    lastCrc,
    runCount: state.runIds.length,
    runs: () => state.runIds.map((id, i) => [id, state.latest[i] ?? 0] as const)[Symbol.iterator](),
    unfinished: state.unfinished,
    requests: state.requests,
  };
  return Buffer.concat([...runIndexCheckpointFrames(source, frameBytes)]);
}

/** Decodes a checkpoint file, or says why it cannot be used. */
export function decodeRunIndexCheckpoint(content: Buffer): RunIndexCheckpoint | { problem: string } {
  const frames: Buffer[] = [];
  for (let pos = 0, seq = CHECKPOINT_FORMAT; pos < content.length; seq++) {
    const decoded = decodeFrame(content, pos);
    if (decoded.kind === "truncated") return { problem: "file is cut short" };
    if (decoded.kind === "bad") return { problem: decoded.reason };
    if (decoded.record.seq !== seq) {
      return { problem: pos === 0 ? `unknown checkpoint format ${decoded.record.seq}` : `frame ${seq} is out of place` };
    }
    const { body } = decoded.record;
    frames.push(Buffer.from(body.buffer, body.byteOffset, body.byteLength));
    pos = decoded.end;
  }
  const [head, ...sections] = frames;
  if (head?.length !== HEAD_BYTES) return { problem: "malformed head" };
  const kept = head.readUInt32BE(12);
  if (kept !== RECENT_REQUEST_IDS) return { problem: `it remembers ${kept} request ids, this runtime ${RECENT_REQUEST_IDS}` };
  const counts = { runs: head.readUInt32BE(16), unfinished: head.readUInt32BE(20), requests: head.readUInt32BE(24) };
  const state: RunIndexState = { lastSeq: Number(head.readBigUInt64BE(0)), runIds: [], latest: [], unfinished: [], requests: [] };
  const reader = new EntryReader(sections);
  try {
    for (let i = 0; i < counts.runs; i++) {
      reader.begin(SECTION.runs);
      state.latest.push(reader.u64());
      state.runIds.push(reader.text());
    }
    for (let i = 0; i < counts.unfinished; i++) {
      reader.begin(SECTION.unfinished);
      state.unfinished.push(reader.u32());
    }
    for (let i = 0; i < counts.requests; i++) {
      reader.begin(SECTION.requests);
      state.requests.push({ ordinal: reader.u32(), requestId: reader.text(), fingerprint: reader.text() });
    }
    if (!reader.done) return { problem: "more entries than its head counts" };
  } catch (error) {
    return { problem: error instanceof CheckpointFormatError ? error.message : "a name in it is not UTF-8" };
  }
  return { state, lastCrc: head.readUInt32BE(8) };
}

/** Packs entries of one section into frames of at most `frameBytes` (at least one entry each). */
function* sectionFrames(
  kind: number,
  frameBytes: number,
  frame: (body: Buffer) => Buffer,
  next: () => Buffer | undefined,
): Generator<Buffer, void, undefined> {
  let parts: Uint8Array[] = [Uint8Array.of(kind)];
  let size = 1;
  for (let entry = next(); entry !== undefined; entry = next()) {
    if (parts.length > 1 && size + entry.length > frameBytes) {
      yield frame(Buffer.concat(parts, size));
      parts = [Uint8Array.of(kind)];
      size = 1;
    }
    parts.push(entry);
    size += entry.length;
  }
  if (parts.length > 1) yield frame(Buffer.concat(parts, size));
}

class CheckpointFormatError extends Error {}

/** Reads entries in order across the section frames, checking each frame's section. */
class EntryReader {
  private frame = -1;
  private buf: Buffer = Buffer.alloc(0);
  private pos = 0;

  constructor(private readonly frames: readonly Buffer[]) {}

  /** True when every frame was read to its end. */
  get done(): boolean {
    return this.pos === this.buf.length && this.frame === this.frames.length - 1;
  }

  /** Starts the next entry, of section `kind` (moving to the next frame when this one is read). */
  begin(kind: number): void {
    if (this.pos < this.buf.length) return;
    const next = this.frames[++this.frame];
    if (!next || next.length < 2) throw new CheckpointFormatError("fewer entries than its head counts");
    if (next[0] !== kind) throw new CheckpointFormatError(`frame ${this.frame + 2} is of the wrong section`);
    this.buf = next;
    this.pos = 1;
  }

  u32(): number {
    return this.buf.readUInt32BE(this.take(4));
  }

  u64(): number {
    return Number(this.buf.readBigUInt64BE(this.take(8)));
  }

  text(): string {
    const length = this.u32();
    const at = this.take(length);
    return fromUtf8.decode(this.buf.subarray(at, at + length));
  }

  /** Moves past `length` bytes of the current frame, or fails if it has fewer. */
  private take(length: number): number {
    const at = this.pos;
    if (at + length > this.buf.length) throw new CheckpointFormatError("malformed entry");
    this.pos += length;
    return at;
  }
}

function u32(value: number): Buffer {
  const buf = Buffer.allocUnsafe(4);
  buf.writeUInt32BE(value, 0);
  return buf;
}

function text(value: string): Buffer {
  const bytes = Buffer.from(value, "utf8");
  return Buffer.concat([u32(bytes.length), bytes]);
}
