/**
 * The longest prefix of `text` that fits in `maxBytes` UTF-8 bytes, cut
 * between characters (never inside a multi-byte sequence or a surrogate
 * pair), so a capped answer never ends in a broken character.
 */
export function utf8Prefix(text: string, maxBytes: number): string {
  let bytes = 0;
  let end = 0;
  for (const char of text) {
    const size = Buffer.byteLength(char, "utf8");
    if (bytes + size > maxBytes) break;
    bytes += size;
    end += char.length;
  }
  return text.slice(0, end);
}

/**
 * How many of `bytes` to decode (as `toString("utf8")` does) so that the
 * text is at most `maxTextBytes` UTF-8 bytes and the cut lies between
 * characters: a read slice that ends inside a multi-byte character would
 * show a broken one and tell the model to go on from the middle of it, and
 * invalid bytes (Latin-1 text, binary) grow threefold as U+FFFD, so a slice
 * sized in file bytes could overflow the bound it was sized for. Counting
 * each invalid byte as a U+FFFD of its own over-counts where the decoder
 * merges a few, which only keeps the text further inside the bound. When
 * `complete` (the bytes run to the end of the file), a character cut off at
 * the end is invalid bytes like any other, as nothing follows to complete
 * it. Takes at least one character or byte, so a reader always moves on.
 */
export function utf8BytePrefix(bytes: Uint8Array, maxTextBytes: number, complete: boolean): number {
  let at = 0;
  let textBytes = 0;
  while (at < bytes.length) {
    const size = sequenceSize(bytes, at);
    const cutOff = size > 0 && at + size > bytes.length;
    if (cutOff && !complete && at > 0) break;
    const [consumed, cost] = size > 0 && !cutOff ? [size, size] : [1, REPLACEMENT_BYTES];
    if (textBytes + cost > maxTextBytes && at > 0) break;
    at += consumed;
    textBytes += cost;
  }
  return at;
}

/** UTF-8 bytes of U+FFFD, which the decoder puts for an invalid byte. */
const REPLACEMENT_BYTES = 3;

/**
 * The length of the well-formed UTF-8 sequence that starts at `at` (its
 * full length even when `bytes` ends before it does, so long as what is
 * there is well-formed), or 0 when the byte there starts none.
 */
function sequenceSize(bytes: Uint8Array, at: number): number {
  const [size, low, high] = leadByte(bytes[at] as number);
  for (let i = 1; i < size && at + i < bytes.length; i++) {
    const byte = bytes[at + i] as number;
    if (i === 1 ? byte < low || byte > high : byte < 0x80 || byte > 0xbf) return 0;
  }
  return size;
}

/**
 * A lead byte's sequence length and the range its second byte must lie in
 * (RFC 3629: no overlong forms, no surrogates, nothing past U+10FFFF);
 * length 0 for a byte that leads no sequence.
 */
function leadByte(lead: number): [size: number, low: number, high: number] {
  if (lead < 0x80) return [1, 0, 0];
  if (lead >= 0xc2 && lead <= 0xdf) return [2, 0x80, 0xbf];
  if (lead === 0xe0) return [3, 0xa0, 0xbf];
  if (lead === 0xed) return [3, 0x80, 0x9f];
  if (lead >= 0xe1 && lead <= 0xef) return [3, 0x80, 0xbf];
  if (lead === 0xf0) return [4, 0x90, 0xbf];
  if (lead >= 0xf1 && lead <= 0xf3) return [4, 0x80, 0xbf];
  if (lead === 0xf4) return [4, 0x80, 0x8f];
  return [0, 0, 0];
}
