/**
 * `text` cut to at most `maxBytes` UTF-8 bytes, never inside a character:
 * for texts an execution backend hands the core (a run's error, a retry's
 * reason), which a provider can make as long as it likes.
 */
export function cutUtf8(text: string, maxBytes: number): string {
  const bytes = Buffer.from(text, "utf8");
  if (bytes.byteLength <= maxBytes) return text;
  let end = maxBytes;
  while (end > 0 && ((bytes[end] ?? 0) & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end).toString("utf8");
}
