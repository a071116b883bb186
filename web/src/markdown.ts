import DOMPurify from "dompurify";
import { marked } from "marked";

/**
 * What DOMPurify's HTML profile keeps but model output has no business
 * drawing: style sheets and inline styles (a model could hide or cover the
 * page; only the CSP stopped them) and form controls (a model could draw its
 * own "Approve" button or input field beside the page's real ones). The
 * `background` attribute (of tables and cells) is an image the browser
 * fetches, as media elements are (see {@link replaceMedia}).
 */
const FORBID_TAGS = ["style", "form", "input", "button", "textarea", "select", "option", "optgroup", "fieldset", "label"];
const FORBID_ATTR = ["style", "background"];

/** Elements whose URLs the browser fetches on sight, outermost first (a picture or video holds sources and images). */
const MEDIA = "picture, video, audio, img, source, track";

/**
 * Model output as HTML: markdown parsed by marked, then sanitised by
 * DOMPurify (no scripts, handlers, foreign frames, styles or form controls),
 * since a model can be made to write anything. Links open in a new tab
 * without an opener.
 */
export function renderMarkdown(target: HTMLElement, text: string): void {
  const html = marked.parse(text, { async: false, gfm: true, breaks: true });
  // Parsed in an inert document (no fetches, no scripts), so media are gone before anything reaches the page.
  const body = new DOMParser().parseFromString(
    DOMPurify.sanitize(html, { USE_PROFILES: { html: true }, FORBID_TAGS, FORBID_ATTR }),
    "text/html",
  ).body;
  replaceMedia(body);
  target.replaceChildren(...body.childNodes);
  for (const link of target.querySelectorAll("a")) {
    link.target = "_blank";
    link.rel = "noopener noreferrer";
  }
}

/**
 * Replaces each image, video, audio, picture and source by a plain link to
 * its URL, labelled with its kind and its alt text or the URL: the page never fetches
 * what a model chose. Remote URLs only drew broken icons (the CSP blocks
 * them), and a same-origin one made the browser send the Backend a GET the
 * model picked. Only http(s) URLs become links (a data: URL, or one inside
 * a link, is shown as its label alone).
 */
function replaceMedia(root: HTMLElement): void {
  for (const element of root.querySelectorAll<HTMLElement>(MEDIA)) {
    if (!root.contains(element)) continue; // inside a picture or video already replaced
    const inner = element.querySelector("img") ?? element.querySelector("source");
    const url = mediaUrl(element) ?? (inner ? mediaUrl(inner) : undefined) ?? "";
    const alt = element.getAttribute("alt") ?? inner?.getAttribute("alt") ?? "";
    const kind = element.localName === "video" || element.localName === "audio" ? element.localName : "image";
    const web = isWebUrl(url);
    // A data: URL can be megabytes of base64: not a label.
    const shown = alt.trim() || (web ? url : "");
    const label = shown ? `${kind}: ${shown}` : kind;
    const document = element.ownerDocument;
    // Inside a link (a linked image), the label stays text: a link in a link would be two targets in one.
    const linked = web && !element.closest("a");
    const replacement = document.createElement(linked ? "a" : "span");
    if (linked) replacement.setAttribute("href", url);
    replacement.className = "media";
    replacement.textContent = label;
    element.replaceWith(replacement);
  }
}

/** The URL an element would fetch: its src, else the first candidate of its srcset. */
function mediaUrl(element: Element): string | undefined {
  const src = element.getAttribute("src")?.trim();
  if (src) return src;
  return element.getAttribute("srcset")?.trim().split(/\s+/)[0]?.replace(/,$/, "") || undefined;
}

function isWebUrl(url: string): boolean {
  try {
    return ["http:", "https:"].includes(new URL(url, location.href).protocol);
  } catch {
    return false;
  }
}
