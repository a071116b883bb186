import { WireType } from "@bufbuild/protobuf/wire";
import type { UnknownField } from "@bufbuild/protobuf";
import type { StreamItem } from "./subscription.js";

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
  let prefix = 1;
  for (let n = bytes.length; n >= 0x80; n >>>= 7) prefix++;
  const out = new Uint8Array(prefix + bytes.length);
  let n = bytes.length;
  let pos = 0;
  while (n >= 0x80) {
    out[pos++] = (n & 0x7f) | 0x80;
    n >>>= 7;
  }
  out[pos++] = n;
  out.set(bytes, pos);
  return out;
}
