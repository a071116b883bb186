import { h } from "./dom.js";
import { renderMarkdown } from "./markdown.js";

/**
 * Markdown that grows while it streams, rendered so that each frame costs
 * what the growing end costs, not the whole answer: re-parsing and
 * sanitising everything per frame took 50 ms at 50 KB and 500 ms at 1 MB
 * (Chromium, this machine), so a long answer pegged the page and total work
 * grew with the square of its length. The text is cut after its last blank
 * line outside a code fence, and after a code fence's closing line; what
 * comes before is rendered once into its own segment, only the rest again on
 * the next frame. Inside a fence still open there is no such cut, so an
 * answer that is one long code block would be re-parsed whole every frame:
 * an open fence's body is shown as plain text in a `<pre><code>` instead
 * (what marked makes of it, unhighlighted), appended to, never re-parsed,
 * and rendered as markdown once its closing line arrives. Blocks rarely span
 * a blank line outside a fence, and the committed entry is rendered whole
 * anyway.
 */
export class StreamingMarkdown {
  /** How much of the text is rendered into settled segments. */
  private settled = 0;
  private readonly tail: HTMLElement;
  private readonly scanner = new FenceScanner();
  /** The open fence shown as text: where it starts, its code element, how much of the text is in it. */
  private open: { start: number; code: HTMLElement; shown: number } | undefined;
  /** Characters handed to the markdown parser so far (the per-frame cost the tests bound). */
  parsed = 0;

  constructor(readonly element: HTMLElement) {
    this.tail = h("div", { class: "md-tail" });
    element.replaceChildren(this.tail);
  }

  /** Shows `text`, which extends the text shown before. */
  update(text: string): void {
    const cut = this.scanner.scan(text);
    if (cut > this.settled) {
      const segment = h("div", { class: "md-segment" });
      this.render(segment, text.slice(this.settled, cut));
      this.tail.before(segment);
      this.settled = cut;
      this.open = undefined;
    }
    const fence = this.scanner.fence;
    if (!fence) {
      this.open = undefined;
      this.render(this.tail, text.slice(this.settled));
      return;
    }
    if (this.open?.start !== fence.start) {
      // The fence just opened: what precedes it is rendered once (a fence interrupts any paragraph).
      this.render(this.tail, text.slice(this.settled, fence.start));
      const code = h("code", fence.language ? { class: `language-${fence.language}` } : {});
      this.tail.append(h("pre", {}, code));
      this.open = { start: fence.start, code, shown: fence.body };
    }
    if (text.length > this.open.shown) this.open.code.append(text.slice(this.open.shown));
    this.open.shown = text.length;
  }

  private render(target: HTMLElement, text: string): void {
    this.parsed += text.length;
    renderMarkdown(target, text);
  }
}

/** An open code fence: its marker, where its opening line starts, where its body starts, its language. */
interface OpenFence {
  marker: string;
  start: number;
  body: number;
  language: string;
}

/**
 * Finds the places where streamed markdown may be cut: just after a blank
 * line outside a code fence, or just after a fence's closing line. Resumable:
 * each call reads only the whole lines added since the last one, so an open
 * fence costs nothing per frame however long it grows.
 */
export class FenceScanner {
  /** The latest cut found; 0 when there is none yet. */
  private end = 0;
  /** Where the next line not yet read starts. */
  private next = 0;
  fence: OpenFence | undefined;

  /** The latest cut in `text`, which extends the text scanned before. */
  scan(text: string): number {
    while (this.next < text.length) {
      const newline = text.indexOf("\n", this.next);
      // The last line may still grow: only whole lines count.
      if (newline < 0) break;
      const line = text.slice(this.next, newline);
      const opening = /^ {0,3}(`{3,}|~{3,})\s*([^\s`]*)/.exec(line);
      const marker = opening?.[1];
      const fence = this.fence;
      if (fence === undefined && marker) {
        this.fence = { marker, start: this.next, body: newline + 1, language: opening[2] ?? "" };
      } else if (
        fence !== undefined &&
        marker &&
        marker[0] === fence.marker[0] &&
        marker.length >= fence.marker.length &&
        line.trim() === marker
      ) {
        this.fence = undefined;
        this.end = newline + 1;
      } else if (fence === undefined && line.trim() === "") {
        this.end = newline + 1;
      }
      this.next = newline + 1;
    }
    return this.end;
  }
}
