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
