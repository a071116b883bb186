import DOMPurify from "dompurify";
import { marked } from "marked";

/**
 * What DOMPurify's HTML profile keeps but model output has no business
 * drawing: style sheets and inline styles (a model could hide or cover the
 * page; only the CSP stopped them) and form controls (a model could draw its
 * own "Approve" button or input field beside the page's real ones).
 */
const FORBID_TAGS = ["style", "form", "input", "button", "textarea", "select", "option", "optgroup", "fieldset", "label"];
const FORBID_ATTR = ["style"];

/**
 * Model output as HTML: markdown parsed by marked, then sanitised by
 * DOMPurify (no scripts, handlers, foreign frames, styles or form controls),
 * since a model can be made to write anything. Links open in a new tab
 * without an opener.
 */
export function renderMarkdown(target: HTMLElement, text: string): void {
  const html = marked.parse(text, { async: false, gfm: true, breaks: true });
  target.innerHTML = DOMPurify.sanitize(html, { USE_PROFILES: { html: true }, FORBID_TAGS, FORBID_ATTR });
  for (const link of target.querySelectorAll("a")) {
    link.target = "_blank";
    link.rel = "noopener noreferrer";
  }
}
