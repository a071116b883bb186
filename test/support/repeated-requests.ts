/**
 * Protobuf wire bytes written by hand, for requests made huge by repeating
 * one entry: encoding hundreds of thousands of entries with toBinary costs
 * a test seconds, and the time it measures is the server's, not its own.
 */

/** A varint. */
function varint(value: number): Buffer {
  const bytes: number[] = [];
  let rest = value;
  while (rest >= 0x80) {
    bytes.push((rest & 0x7f) | 0x80);
    rest = Math.floor(rest / 0x80);
  }
  bytes.push(rest);
  return Buffer.from(bytes);
}

/** A length-delimited field (a string, bytes, a nested message, a map entry). */
export function bytesField(fieldNumber: number, payload: Uint8Array): Buffer {
  return Buffer.concat([varint((fieldNumber << 3) | 2), varint(payload.length), payload]);
}

/** A string field. */
export function stringField(fieldNumber: number, text: string): Buffer {
  return bytesField(fieldNumber, Buffer.from(text, "utf8"));
}

/** `entry` repeated until the whole is at least `bytes` long. */
export function repeatedEntries(entry: Buffer, bytes: number): Buffer {
  return Buffer.alloc(Math.ceil(bytes / entry.length) * entry.length, entry);
}
