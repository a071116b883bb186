import { h } from "./dom.js";
import { renderMarkdown } from "./markdown.js";

/**
 * Markdown that grows while it streams, rendered so that each frame costs
 * what the growing end costs, not the whole answer: re-parsing and
 * sanitising everything per frame took 50 ms at 50 KB and 500 ms at 1 MB
 * (Chromium, this machine), so a long answer pegged the page and total work
 * grew with the square of its length. The text is cut after its last blank
 * line outside a code fence; what comes before is rendered once into its own
 * segment, only the rest again on the next frame. Blocks rarely span a blank
 * line outside a fence, and the committed entry is rendered whole anyway.
 */
export class StreamingMarkdown {
  /** How much of the text is rendered into settled segments. */
  private settled = 0;
  private readonly tail: HTMLElement;

  constructor(readonly element: HTMLElement) {
    this.tail = h("div", { class: "md-tail" });
    element.replaceChildren(this.tail);
  }

  /** Shows `text`, which extends the text shown before. */
  update(text: string): void {
    const cut = settledEnd(text, this.settled);
    if (cut > this.settled) {
      const segment = h("div", { class: "md-segment" });
      renderMarkdown(segment, text.slice(this.settled, cut));
      this.tail.before(segment);
      this.settled = cut;
    }
    renderMarkdown(this.tail, text.slice(this.settled));
  }
}

/**
 * Where the settled part of `text` ends: just after its last blank line that
 * is outside a code fence, scanning from `from` (itself such a place, so
 * outside any fence); `from` when there is none yet.
 */
export function settledEnd(text: string, from: number): number {
  let fence: string | undefined;
  let end = from;
  let start = from;
  while (start < text.length) {
    const newline = text.indexOf("\n", start);
    // The last line may still grow: only whole lines count.
    if (newline < 0) break;
    const line = text.slice(start, newline);
    const marker = /^ {0,3}(`{3,}|~{3,})/.exec(line)?.[1];
    if (fence === undefined && marker) fence = marker;
    else if (fence !== undefined && marker && marker[0] === fence[0] && marker.length >= fence.length && line.trim() === marker)
      fence = undefined;
    else if (fence === undefined && line.trim() === "") end = newline + 1;
    start = newline + 1;
  }
  return end;
}
