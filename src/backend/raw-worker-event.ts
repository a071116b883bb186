import { fromBinary } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import { InFlightBlockKind } from "../../gen/worker_runtime/v1/events_pb.js";
import { RunSchema } from "../../gen/worker_runtime/v1/run_pb.js";
import { WorkerSchema } from "../../gen/worker_runtime/v1/worker_pb.js";
import type { ShownChange } from "./shown-change.js";

/** WorkerEvent's kind fields (events.proto). */
const WORKER_CHANGED = 10;
const RUN_CHANGED = 11;
const TRANSCRIPT_APPENDED = 12;
const TEXT_DELTA = 20;
const REASONING_DELTA = 21;
const TOOL_CALL_DELTA = 22;
const BLOCK_DISCARDED = 23;
/** TranscriptEntry.block_id; a delta's run_id and block_id; a tool call's id, name and arguments. */
const ENTRY_BLOCK_ID = 4;
const RUN_ID = 1;
const BLOCK_ID = 2;
const TEXT = 3;
const TOOL_CALL_ID = 3;
const TOOL_NAME = 4;
const ARGUMENTS = 5;

/**
 * What one undecoded WorkerEvent (a length-delimited entry of a watch
 * response, see raw-watch.ts) changes in a relayed client's view, read
 * without decoding the event: worker and run changes are rare and decoded;
 * a delta's text, the bulk of a stream, is only measured (its UTF-8 bytes),
 * its ids come from `ids`, and a committed entry is read for its block id
 * alone. The reader here allocates nothing per field: the relay reads
 * every event of every binary client this way. With `withText`, an output
 * change also carries its text's UTF-8 bytes (a view into
 * `lengthDelimited`, not a copy), for a view that keeps the text itself
 * (relayed-worker-view.ts, holding text).
 */
export function rawWorkerChange(lengthDelimited: Uint8Array, ids: RecentIds, withText = false): ShownChange | undefined {
  const wire = new Wire(lengthDelimited, 0, lengthDelimited.byteLength);
  wire.end = wire.varint() + wire.pos;
  while (wire.pos < wire.end) {
    const tag = wire.varint();
    const no = tag >>> 3;
    if (no < WORKER_CHANGED || (tag & 7) !== WireType.LengthDelimited) {
      wire.skip(tag & 7);
      continue;
    }
    const length = wire.varint();
    const inner = new Wire(lengthDelimited, wire.pos, wire.pos + length);
    switch (no) {
      case WORKER_CHANGED:
        return { kind: "worker", worker: fromBinary(WorkerSchema, inner.rest()) };
      case RUN_CHANGED:
        return { kind: "run", run: fromBinary(RunSchema, inner.rest()) };
      case TRANSCRIPT_APPENDED: {
        const blockId = inner.fields(ids, ENTRY_BLOCK_ID, 0, 0).a;
        return blockId ? { kind: "blockEnded", blockId } : undefined;
      }
      case TEXT_DELTA:
      case REASONING_DELTA: {
        const read = inner.fields(ids, RUN_ID, BLOCK_ID, TEXT);
        const block = no === TEXT_DELTA ? InFlightBlockKind.TEXT : InFlightBlockKind.REASONING;
        // One object either way (one shape for the view's reads): the text only when asked.
        return {
          kind: "output",
          block,
          runId: read.a,
          blockId: read.b,
          bytes: read.measured,
          toolCallId: "",
          toolName: "",
          text: withText ? lengthDelimited.subarray(read.at, read.at + read.measured) : undefined,
        };
      }
      case TOOL_CALL_DELTA: {
        const { a: runId, b: blockId, measured: bytes, at } = inner.fields(ids, RUN_ID, BLOCK_ID, ARGUMENTS);
        const { a: toolCallId, b: toolName } = new Wire(lengthDelimited, wire.pos, wire.pos + length).fields(
          ids,
          TOOL_CALL_ID,
          TOOL_NAME,
          0,
        );
        const text = withText ? lengthDelimited.subarray(at, at + bytes) : undefined;
        return { kind: "output", block: InFlightBlockKind.TOOL_CALL, runId, blockId, bytes, toolCallId, toolName, text };
      }
      case BLOCK_DISCARDED:
        return { kind: "blockEnded", blockId: inner.fields(ids, BLOCK_ID, 0, 0).a };
      default:
        return undefined;
    }
  }
  return undefined;
}

/** A read position in protobuf wire bytes, from `pos` up to `end`. */
class Wire {
  constructor(
    private readonly buf: Uint8Array,
    public pos: number,
    public end: number,
  ) {}

  /** A varint, as a number (the lengths and tags read here fit). */
  varint(): number {
    let value = 0;
    let shift = 1;
    for (;;) {
      const byte = this.buf[this.pos++] ?? 0;
      value += (byte & 0x7f) * shift;
      if (byte < 0x80 || this.pos >= this.end) return value;
      shift *= 128;
    }
  }

  skip(wireType: number): void {
    if (wireType === WireType.Varint) this.varint();
    else if (wireType === WireType.Bit64) this.pos += 8;
    else if (wireType === WireType.Bit32) this.pos += 4;
    else if (wireType === WireType.LengthDelimited) {
      const length = this.varint(); // read before pos is: `this.pos += this.varint()` would add to the old pos
      this.pos += length;
    } else this.pos = this.end; // groups are not in this schema: stop reading
  }

  /** The rest, as a view (no copy). */
  rest(): Uint8Array {
    return this.buf.subarray(this.pos, this.end);
  }

  /**
   * The string fields `a` and `b` of a message (through `ids`), and the byte
   * length of field `measured` and where its bytes start (`at`); 0 = none.
   */
  fields(ids: RecentIds, a: number, b: number, measured: number): { a: string; b: string; measured: number; at: number } {
    const out = { a: "", b: "", measured: 0, at: 0 };
    while (this.pos < this.end) {
      const tag = this.varint();
      const no = tag >>> 3;
      if ((tag & 7) !== WireType.LengthDelimited || (no !== a && no !== b && no !== measured)) {
        this.skip(tag & 7);
        continue;
      }
      const length = this.varint();
      if (no === measured) {
        out.measured = length;
        out.at = this.pos;
      } else if (no === a) out.a = ids.decode(this.buf, this.pos, length);
      else out.b = ids.decode(this.buf, this.pos, length);
      this.pos += length;
    }
    return out;
  }
}

/** How many ids {@link RecentIds} remembers: a run, its blocks, a tool call. */
const RECENT_IDS = 4;
// A leading U+FEFF is content (see runtime/text-encoding.ts), as the decoded relay reads it.
const utf8 = new TextDecoder("utf-8", { ignoreBOM: true });

/**
 * The ids (run, block, tool call) of one relayed stream, decoded once: a
 * stream's deltas repeat the same few, and decoding them per delta was most
 * of the cost of reading an event. Kept as copies, so no response buffer is
 * held.
 */
export class RecentIds {
  private readonly bytes: Uint8Array[] = [];
  private readonly ids: string[] = [];

  /** The string encoded in `buf` from `start`, `length` bytes long. */
  decode(buf: Uint8Array, start: number, length: number): string {
    for (let i = 0; i < this.bytes.length; i++) {
      if (same(this.bytes[i] as Uint8Array, buf, start, length)) return this.ids[i] as string;
    }
    const bytes = buf.slice(start, start + length);
    const id = utf8.decode(bytes);
    this.bytes.unshift(bytes);
    this.ids.unshift(id);
    if (this.bytes.length > RECENT_IDS) {
      this.bytes.pop();
      this.ids.pop();
    }
    return id;
  }
}

function same(known: Uint8Array, buf: Uint8Array, start: number, length: number): boolean {
  if (known.byteLength !== length) return false;
  for (let i = 0; i < length; i++) if (known[i] !== buf[start + i]) return false;
  return true;
}
