import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import type { UnknownField } from "@bufbuild/protobuf";
import type { StreamItem } from "./subscription.js";

/**
 * Encoding is the ceiling of a busy watch stream, so each event is encoded
 * once and its bytes are shared by every subscriber. A batch response
 * carries those bytes as unknown fields with the number of its repeated
 * `events` field: protobuf-es writes unknown fields verbatim, so on the wire
 * they are ordinary `events` entries and every client decodes them as such.
 * Only valid for the binary encoding; JSON clients get decoded events.
 */
export function eventsAsUnknownFields<E>(fieldNo: number, items: readonly StreamItem<E>[]): UnknownField[] {
  return items.map((item) => ({
    no: fieldNo,
    wireType: WireType.LengthDelimited,
    data: new BinaryWriter().uint32(item.bytes.length).raw(item.bytes).finish(),
  }));
}
