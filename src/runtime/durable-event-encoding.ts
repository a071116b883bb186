import { type DescMessage, type MessageShape, ScalarType } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { Buffer } from "node:buffer";
import { encodeMessage } from "./message-encoder.js";
import { isInt32 } from "./scalar-ranges.js";
import { varintSize, writeVarint } from "./varint.js";

/**
 * Encodes the events of the durable streams (worker and runtime-wide) once
 * per event, with the envelope written here and the payload encoded once
 * per message. A run's every change is announced twice, on its worker's
 * stream and runtime-wide, with the same Run; protobuf-es's reflective
 * toBinary spends as long on the envelope (seq, cursor, time: a nested
 * message) as on the Run itself, and a run makes a dozen durable events
 * (issue 9's per-run cost). So the envelope is written directly and a
 * payload marked with {@link sealPayload} is encoded only once, whichever
 * streams carry it, by the planned encoder (message-encoder.ts). Output is byte-identical to toBinary: the envelope's
 * fields come first in both event messages and the oneof after them, empty
 * values are omitted (test/runtime/durable-event-encoding.test.ts); anything
 * this does not cover (unknown fields, values past 2^32, negative times, a
 * value not of its field's type) returns undefined, for toBinary.
 */

/** The shape both event messages share: an envelope and one message-typed oneof. */
export interface DurableEventShape {
  seq: bigint;
  cursor: string;
  time?: Timestamp | undefined;
  kind: { case: string | undefined; value?: unknown };
  $unknown?: unknown[] | undefined;
}

/** Payloads encoded once: messages nobody changes after {@link sealPayload}. */
const sealed = new WeakMap<object, Uint8Array>();

/**
 * Encodes `message` now and keeps its bytes for every event that carries
 * it. The caller promises never to change the message again (the journal's
 * private copy of a run, shared by the store and both events).
 */
export function sealPayload<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>): MessageShape<Desc> {
  sealed.set(message, encodeMessage(schema, message));
  return message;
}

const SEQ_TAG = (1 << 3) | WireType.Varint;
const CURSOR_TAG = (2 << 3) | WireType.LengthDelimited;
const TIME_TAG = (3 << 3) | WireType.LengthDelimited;
const SECONDS_TAG = (1 << 3) | WireType.Varint;
const NANOS_TAG = (2 << 3) | WireType.Varint;
/** Seqs and seconds are written as varints of up to 32 bits (writeVarint); larger ones go to toBinary. */
const LIMIT = 2n ** 32n;
const TIMESTAMP = "google.protobuf.Timestamp";

/**
 * A seq or a time's seconds written here: a bigint from 0 to 2^32 - 1.
 * Anything else (a negative one toBinary refuses, a number it converts) is
 * left to toBinary, so this never writes what it would not.
 */
function isSmallCount(value: unknown): value is bigint {
  return typeof value === "bigint" && value >= 0n && value < LIMIT;
}

/**
 * The layout of an event message if it is the one written here: seq (1,
 * uint64), cursor (2, string), time (3, Timestamp) first, then a oneof of
 * messages. Checked against the generated schema, so a change in the
 * proto falls back to toBinary instead of writing wrong bytes.
 */
export function envelopeLayout(schema: DescMessage): DescMessage | undefined {
  const [seq, cursor, time, ...rest] = schema.fields;
  const ok =
    seq?.localName === "seq" &&
    seq.number === 1 &&
    seq.fieldKind === "scalar" &&
    seq.scalar === ScalarType.UINT64 &&
    cursor?.localName === "cursor" &&
    cursor.number === 2 &&
    cursor.fieldKind === "scalar" &&
    cursor.scalar === ScalarType.STRING &&
    time?.localName === "time" &&
    time.number === 3 &&
    time.fieldKind === "message" &&
    time.message.typeName === TIMESTAMP &&
    rest.every((field) => field.oneof?.localName === "kind" && field.fieldKind === "message");
  return ok ? schema : undefined;
}

/** The event's bytes, or undefined when toBinary must write them (see the module comment). */
export function encodeDurableEvent(layout: DescMessage | undefined, event: DurableEventShape): Uint8Array | undefined {
  const kind = event.kind;
  if (!layout || (event as { $typeName?: unknown }).$typeName !== layout.typeName || kind.case === undefined) return undefined;
  if ((event.$unknown?.length ?? 0) > 0 || !isSmallCount(event.seq) || typeof event.cursor !== "string") return undefined;
  const field = layout.field[kind.case];
  const value = kind.value;
  if (field?.fieldKind !== "message" || typeof value !== "object" || value === null) return undefined;
  const time = event.time;
  let seconds = 0;
  let nanos = 0;
  if (time) {
    if (time.$typeName !== TIMESTAMP || (time.$unknown?.length ?? 0) > 0 || !isSmallCount(time.seconds)) return undefined;
    if (!isInt32(time.nanos) || time.nanos < 0) return undefined;
    seconds = Number(time.seconds);
    nanos = time.nanos;
  }
  const payload = sealed.get(value) ?? encodeMessage(field.message, value as MessageShape<DescMessage>);
  const kindTag = (field.number << 3) | WireType.LengthDelimited;
  const seq = Number(event.seq);
  const cursorBytes = Buffer.byteLength(event.cursor, "utf8");
  const timeBytes = time ? (seconds > 0 ? 1 + varintSize(seconds) : 0) + (nanos > 0 ? 1 + varintSize(nanos) : 0) : 0;
  const size =
    (seq > 0 ? 1 + varintSize(seq) : 0) +
    (cursorBytes > 0 ? 1 + varintSize(cursorBytes) + cursorBytes : 0) +
    (time ? 1 + varintSize(timeBytes) + timeBytes : 0) +
    varintSize(kindTag) +
    varintSize(payload.byteLength) +
    payload.byteLength;
  // A buffer of its own, not a slice of Node's pool: stores keep these bytes for replay, and a kept
  // slice would hold its whole 8 KiB pool slab alive. Every byte is written (checked below).
  const out = Buffer.allocUnsafeSlow(size);
  let pos = 0;
  if (seq > 0) {
    out[pos++] = SEQ_TAG;
    pos = writeVarint(out, pos, seq);
  }
  if (cursorBytes > 0) {
    out[pos++] = CURSOR_TAG;
    pos = writeVarint(out, pos, cursorBytes);
    pos += out.write(event.cursor, pos, cursorBytes, "utf8");
  }
  if (time) {
    out[pos++] = TIME_TAG;
    pos = writeVarint(out, pos, timeBytes);
    if (seconds > 0) {
      out[pos++] = SECONDS_TAG;
      pos = writeVarint(out, pos, seconds);
    }
    if (nanos > 0) {
      out[pos++] = NANOS_TAG;
      pos = writeVarint(out, pos, nanos);
    }
  }
  pos = writeVarint(out, pos, kindTag);
  pos = writeVarint(out, pos, payload.byteLength);
  out.set(payload, pos);
  if (pos + payload.byteLength !== size) throw new Error(`durable event encoding: wrote ${pos + payload.byteLength} of ${size} bytes`);
  return out;
}
