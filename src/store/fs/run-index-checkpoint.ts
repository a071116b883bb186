import type { FileHandle } from "node:fs/promises";
import type { FileStoreStats } from "./file-store-stats.js";
import { readRange } from "./read-range.js";
import { decodeFrame, encodeFrames, FRAME_HEADER_BYTES, FRAME_MAGIC, type LogRecord } from "./record-frame.js";
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

/**
 * The largest frame body a reader takes: 16 times the writer's frame
 * (`RUN_CHECKPOINT.frameBytes`, 64 KiB; a frame exceeds it only by one
 * entry, whose ids are bounded). A longer one is damage or another writer's,
 * and makes open rebuild the index rather than allocate for it.
 */
export const MAX_CHECKPOINT_FRAME_BYTES = 1024 * 1024;

/**
 * Reads a checkpoint file one frame at a time, or says why it cannot be
 * used. Open holds at most one frame of the file (besides the index it
 * builds), however many runs it covers: reading it whole held megabytes per
 * worker, 32 workers at a time.
 */
export async function readRunIndexCheckpoint(fh: FileHandle, stats: FileStoreStats): Promise<RunIndexCheckpoint | { problem: string }> {
  const decoder = new CheckpointDecoder();
  for (let pos = 0; ; ) {
    const header = await readRange(fh, pos, FRAME_HEADER_BYTES, stats);
    if (header.length === 0) break;
    if (header.length < FRAME_HEADER_BYTES) return { problem: "file is cut short" };
    const length = header.readUInt32BE(4);
    if (header.readUInt32BE(0) === FRAME_MAGIC && length > MAX_CHECKPOINT_FRAME_BYTES) {
      return { problem: `a frame of ${length} bytes is over the ${MAX_CHECKPOINT_FRAME_BYTES}-byte bound` };
    }
    const frame = header.readUInt32BE(0) === FRAME_MAGIC ? await readRange(fh, pos, FRAME_HEADER_BYTES + length, stats) : header;
    const decoded = decodeFrame(frame, 0);
    if (decoded.kind === "truncated") return { problem: "file is cut short" };
    if (decoded.kind === "bad") return { problem: decoded.reason };
    const problem = decoder.add(decoded.record);
    if (problem !== undefined) return { problem };
    pos += decoded.end;
  }
  return decoder.finish();
}

/** Decodes a whole checkpoint file held in memory (tests), or says why it cannot be used. */
export function decodeRunIndexCheckpoint(content: Buffer): RunIndexCheckpoint | { problem: string } {
  const decoder = new CheckpointDecoder();
  for (let pos = 0; pos < content.length; ) {
    const decoded = decodeFrame(content, pos);
    if (decoded.kind === "truncated") return { problem: "file is cut short" };
    if (decoded.kind === "bad") return { problem: decoded.reason };
    const problem = decoder.add(decoded.record);
    if (problem !== undefined) return { problem };
    pos = decoded.end;
  }
  return decoder.finish();
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

/** The sections in file order, each with the head's count of its entries. */
const SECTIONS = [SECTION.runs, SECTION.unfinished, SECTION.requests] as const;

/**
 * Builds the index from a checkpoint's frames, handed in one at a time and
 * kept by no one: the head, then frames of one section each, in order, each
 * holding whole entries.
 */
class CheckpointDecoder {
  private next = CHECKPOINT_FORMAT;
  private lastCrc = 0;
  private state: RunIndexState | undefined;
  /** Entries still due per section, from the head's counts. */
  private readonly due = new Map<number, number>();

  /** Takes the next frame; returns why the file cannot be used, if it cannot. */
  add(record: LogRecord): string | undefined {
    const expected = this.next++;
    if (record.seq !== expected) {
      return expected === CHECKPOINT_FORMAT ? `unknown checkpoint format ${record.seq}` : `frame ${expected} is out of place`;
    }
    const body = Buffer.from(record.body.buffer, record.body.byteOffset, record.body.byteLength);
    if (this.state === undefined) return this.head(body);
    if (body.length < 2) return "fewer entries than its head counts";
    const kind = SECTIONS.find((section) => (this.due.get(section) ?? 0) > 0);
    if (kind === undefined) return "more entries than its head counts";
    if (body[0] !== kind) return `frame ${expected - CHECKPOINT_FORMAT + 1n} is of the wrong section`;
    try {
      this.entries(kind, new EntryReader(body), this.state);
    } catch (error) {
      return error instanceof CheckpointFormatError ? error.message : "a name in it is not UTF-8";
    }
    return undefined;
  }

  /** The index, once every frame was added. */
  finish(): RunIndexCheckpoint | { problem: string } {
    if (this.state === undefined) return { problem: "malformed head" };
    if ([...this.due.values()].some((n) => n > 0)) return { problem: "fewer entries than its head counts" };
    return { state: this.state, lastCrc: this.lastCrc };
  }

  private head(body: Buffer): string | undefined {
    if (body.length !== HEAD_BYTES) return "malformed head";
    const kept = body.readUInt32BE(12);
    if (kept !== RECENT_REQUEST_IDS) return `it remembers ${kept} request ids, this runtime ${RECENT_REQUEST_IDS}`;
    this.due.set(SECTION.runs, body.readUInt32BE(16));
    this.due.set(SECTION.unfinished, body.readUInt32BE(20));
    this.due.set(SECTION.requests, body.readUInt32BE(24));
    this.lastCrc = body.readUInt32BE(8);
    this.state = { lastSeq: Number(body.readBigUInt64BE(0)), runIds: [], latest: [], unfinished: [], requests: [] };
    return undefined;
  }

  /** Reads every entry of one section frame into `state`. */
  private entries(kind: number, reader: EntryReader, state: RunIndexState): void {
    while (!reader.done) {
      const due = this.due.get(kind) ?? 0;
      if (due === 0) throw new CheckpointFormatError("more entries than its head counts");
      this.due.set(kind, due - 1);
      if (kind === SECTION.runs) {
        state.latest.push(reader.u64());
        state.runIds.push(reader.text());
      } else if (kind === SECTION.unfinished) {
        state.unfinished.push(reader.u32());
      } else {
        state.requests.push({ ordinal: reader.u32(), requestId: reader.text(), fingerprint: reader.text() });
      }
    }
  }
}

/** Reads the entries of one section frame, after its kind byte. */
class EntryReader {
  private pos = 1;

  constructor(private readonly buf: Buffer) {}

  /** True when the frame was read to its end. */
  get done(): boolean {
    return this.pos === this.buf.length;
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

  /** Moves past `length` bytes of the frame, or fails if it has fewer. */
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
