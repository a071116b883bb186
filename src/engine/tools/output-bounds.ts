/**
 * Cuts text to a byte bound and says so in the text itself: the model only
 * sees the tool result, so a silent cut would read as the whole output.
 */
export function boundText(text: string, maxBytes: number, what = "output"): { text: string; truncated: boolean } {
  const total = Buffer.byteLength(text, "utf8");
  if (total <= maxBytes) return { text, truncated: false };
  const kept = Buffer.from(text, "utf8")
    .subarray(0, maxBytes)
    .toString("utf8")
    .replace(/\uFFFD$/, "");
  return { text: `${kept}\n${truncationNote(what, maxBytes, total)}`, truncated: true };
}

/** The note appended to cut output. */
export function truncationNote(what: string, shownBytes: number, totalBytes: number | undefined): string {
  const total = totalBytes === undefined ? "more" : `${totalBytes}`;
  return `[${what} truncated: showing the first ${shownBytes} of ${total} bytes]`;
}
