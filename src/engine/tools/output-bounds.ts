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

/**
 * {@link boundText} for text followed by `notes` that must survive the cut
 * (ToolOutput.notes): `text` is cut to leave room for them, and they are
 * appended whole. Notes that alone pass `maxBytes` cannot be protected and
 * are cut with the text.
 */
export function boundTextWithNotes(
  text: string,
  notes: readonly string[],
  maxBytes: number,
  what = "output",
): { text: string; truncated: boolean } {
  if (notes.length === 0) return boundText(text, maxBytes, what);
  const tail = notes.join("\n");
  if (text === "") return boundText(tail, maxBytes, what);
  const room = maxBytes - Buffer.byteLength(tail, "utf8") - 1;
  if (room < 0) return boundText(`${text}\n${tail}`, maxBytes, what);
  const body = boundText(text, room, what);
  return { text: `${body.text}\n${tail}`, truncated: body.truncated };
}

/** The note appended to cut output. */
export function truncationNote(what: string, shownBytes: number, totalBytes: number | undefined): string {
  const total = totalBytes === undefined ? "more" : `${totalBytes}`;
  return `[${what} truncated: showing the first ${shownBytes} of ${total} bytes]`;
}
