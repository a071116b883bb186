/**
 * A bound the protobuf encoding of a message cannot exceed, found without
 * encoding it: checking that a run's transcript entry fits one event
 * (run-output-bounds.ts) encoded every entry only to count its bytes, part
 * of a run's fixed cost, when almost every entry is far below the bound.
 * A caller compares this first and encodes only when it is not enough.
 *
 * It walks the message as protobuf-es represents it (plain objects, oneofs
 * as `{ case, value }`, maps as objects, lists as arrays) and counts every
 * value at its largest encoding: a string at 3 bytes per UTF-16 unit, a
 * number at 10, every key as if it were a map entry's key (a string, or a
 * number of up to 10 bytes), each with a tag and a length of up to 5 bytes
 * each. Over-counting is safe, never under.
 */
export function encodedSizeAtMost(value: unknown): number {
  switch (typeof value) {
    case "string":
      return FRAME + 3 * value.length;
    case "number":
    case "bigint":
    case "boolean":
      return FRAME + 10;
    case "object": {
      if (value === null) return 0;
      if (value instanceof Uint8Array) return FRAME + value.byteLength;
      let size = FRAME;
      if (Array.isArray(value)) {
        for (const item of value) size += encodedSizeAtMost(item);
        return size;
      }
      for (const [key, item] of Object.entries(value)) size += FRAME + KEY + 3 * key.length + encodedSizeAtMost(item);
      return size;
    }
    default:
      return 0;
  }
}

/** A tag and a length prefix, each at most a 5-byte varint. */
const FRAME = 10;
/** A map entry's key beyond its characters: its tag, and its length or a number's varint. */
const KEY = 16;
