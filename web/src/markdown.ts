import DOMPurify from "dompurify";
import { marked } from "marked";

/**
 * Model output as HTML: markdown parsed by marked, then sanitised by
 * DOMPurify (no scripts, handlers or foreign frames), since a model can be
 * made to write anything. Links open in a new tab without an opener.
 */
export function renderMarkdown(target: HTMLElement, text: string): void {
  const html = marked.parse(text, { async: false, gfm: true, breaks: true });
  target.innerHTML = DOMPurify.sanitize(html, { USE_PROFILES: { html: true } });
  for (const link of target.querySelectorAll("a")) {
    link.target = "_blank";
    link.rel = "noopener noreferrer";
  }
}
