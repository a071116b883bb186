import { WireType } from "@bufbuild/protobuf/wire";
import { create, type DescMessage, type MessageShape, type UnknownField } from "@bufbuild/protobuf";
import { Buffer } from "node:buffer";
import type { StreamItem } from "./subscription.js";
import { varintSize, writeVarint } from "./varint.js";

/**
 * Encoding is the ceiling of a busy watch stream, so each event is encoded
 * once and its bytes are shared by every subscriber. A batch response
 * carries those bytes as unknown fields with the number of its repeated
 * `events` field: protobuf-es writes unknown fields verbatim, so on the wire
 * they are ordinary `events` entries and every client decodes them as such.
 * Only valid for the binary encoding; JSON clients get decoded events.
 *
 * The length-prefixed form of an item does not depend on the field number,
 * so it is built once per item and shared by every subscriber's batches.
 */
export function eventsAsUnknownFields<E>(fieldNo: number, items: readonly StreamItem<E>[]): UnknownField[] {
  const fields = new Array<UnknownField>(items.length);
  for (let i = 0; i < items.length; i++) {
    const item = items[i] as StreamItem<E>;
    if (!item.lengthDelimited) item.lengthDelimited = lengthDelimited(item.bytes);
    fields[i] = { no: fieldNo, wireType: WireType.LengthDelimited, data: item.lengthDelimited };
  }
  return fields;
}

/** `bytes` preceded by its length as a varint: the payload of a length-delimited field. */
export function lengthDelimited(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(varintSize(bytes.length) + bytes.length);
  out.set(bytes, writeVarint(out, 0, bytes.length));
  return out;
}

/** The bytes of a gRPC message frame's header: flags (1) and length (4). */
export const GRPC_FRAME_HEADER_BYTES = 5;

/**
 * A batch response for the binary encoding whose gRPC frame is built at
 * once: the frame header, then every item as an `events` entry (tag,
 * length, the item's bytes), in one buffer, each item's bytes copied once.
 * The binary gRPC stream writer sends {@link encodedBatchFrame} as it is,
 * with no second encoding of the response; every other consumer (Connect,
 * gRPC-Web) sees an ordinary message whose events are unknown fields (see
 * {@link eventsAsUnknownFields}), made only when read.
 */
export function encodedBatch<R extends DescMessage>(schema: R, fieldNo: number, items: readonly StreamItem<unknown>[]): MessageShape<R> {
  const tag = (fieldNo << 3) | WireType.LengthDelimited;
  const tagSize = varintSize(tag);
  let size = GRPC_FRAME_HEADER_BYTES;
  for (const item of items) size += tagSize + varintSize(item.bytes.length) + item.bytes.length;
  // From Node's buffer pool, not a buffer of its own: one malloc and one ArrayBuffer less per
  // watch message. Every byte is written below (the check at the end), so nothing stale goes out.
  const frame = Buffer.allocUnsafe(size);
  const bodyBytes = size - GRPC_FRAME_HEADER_BYTES;
  // Flags 0 (not compressed), then the body's length, big-endian.
  frame[0] = 0;
  frame[1] = bodyBytes >>> 24;
  frame[2] = (bodyBytes >>> 16) & 0xff;
  frame[3] = (bodyBytes >>> 8) & 0xff;
  frame[4] = bodyBytes & 0xff;
  let pos = GRPC_FRAME_HEADER_BYTES;
  for (const item of items) {
    pos = writeVarint(frame, pos, tag);
    pos = writeVarint(frame, pos, item.bytes.length);
    frame.set(item.bytes, pos);
    pos += item.bytes.length;
  }
  if (pos !== size) throw new Error(`encoded batch frame: wrote ${pos} of ${size} bytes`);
  const batch = new EncodedBatch(frame, fieldNo, items);
  setZeroFields(batch, schema);
  return batch as unknown as MessageShape<R>;
}

/** The ready gRPC frame (header and body) of a response made by {@link encodedBatch}; undefined for any other message. */
export function encodedBatchFrame(message: unknown): Uint8Array | undefined {
  return message instanceof EncodedBatch ? message.frame : undefined;
}

/** See {@link encodedBatch}. Its `$unknown` (the events, for protobuf-es) is made only if something reads it. */
class EncodedBatch {
  private unknown: UnknownField[] | undefined;

  constructor(
    readonly frame: Uint8Array,
    private readonly fieldNo: number,
    private readonly items: readonly StreamItem<unknown>[],
  ) {}

  get $unknown(): UnknownField[] {
    this.unknown ??= eventsAsUnknownFields(this.fieldNo, this.items);
    return this.unknown;
  }

  set $unknown(fields: UnknownField[]) {
    this.unknown = fields;
  }
}

/** Per schema, the own fields of an empty message (`$typeName`, empty lists and maps, zero scalars). */
const zeroTemplates = new Map<DescMessage, Record<string, unknown>>();

/** Sets the schema's empty fields on `target`, as `create` would: lists, maps and oneofs are new for every message. */
function setZeroFields(target: object, schema: DescMessage): void {
  let template = zeroTemplates.get(schema);
  if (!template) {
    template = { ...create(schema) } as Record<string, unknown>;
    zeroTemplates.set(schema, template);
  }
  const fields = target as Record<string, unknown>;
  for (const key in template) {
    const value = template[key];
    if (Array.isArray(value)) fields[key] = [];
    else if (value instanceof Uint8Array) fields[key] = new Uint8Array(0);
    else fields[key] = typeof value === "object" && value !== null ? { ...value } : value;
  }
}
