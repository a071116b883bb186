import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launchChromium } from "../support/chromium.js";

/**
 * The console's markdown renderer against hostile model output, in real
 * Chromium (DOMPurify needs a real DOM): a prompt-injected model can write
 * anything, so nothing it writes may run script, load or submit elsewhere,
 * or draw the page's own controls, whether rendered whole (a committed entry)
 * or delta by delta (the streaming view, cut at every possible point). The
 * test page has no CSP: the renderer alone must hold.
 */

let browser: Browser;
let page: Page;

beforeAll(async () => {
  const bundle = await build({
    stdin: {
      contents: 'export { renderMarkdown } from "./markdown.ts"; export { StreamingMarkdown } from "./streaming-markdown.ts";',
      resolveDir: fileURLToPath(new URL("../../web/src/", import.meta.url)),
      loader: "ts",
    },
    bundle: true,
    format: "iife",
    globalName: "md",
    platform: "browser",
    write: false,
    logLevel: "warning",
  });
  browser = await launchChromium();
  page = await browser.newPage();
  await page.setContent("<div id=out></div>");
  await page.addScriptTag({ content: bundle.outputFiles[0]!.text });
  await page.addScriptTag({ content: UNSAFE });
});

afterAll(async () => {
  await browser?.close();
});

/** Model output that tries to run script, each payload setting `window.__ran` if it ever runs. */
const HOSTILE: Record<string, string> = {
  "javascript link": "[a](javascript:__ran=1)",
  "mixed-case scheme": "[a](JaVaScRiPt:__ran=1)",
  "entity in scheme": "[a](&#106;avascript:__ran=1)",
  "hex entity tab in scheme": "[a](java&#x09;script:__ran=1)",
  "named entity colon": "[a](javascript&colon;__ran=1)",
  "leading space": "[a]( javascript:__ran=1)",
  "angle-bracket destination": "[a](<javascript:__ran=1>)",
  autolink: "<javascript:__ran=1>",
  "reference definition": "[x]: javascript:__ran=1\n\n[x]",
  "vbscript link": "[a](vbscript:msgbox(1))",
  "data html link": "[a](data:text/html,<script>__ran=1</script>)",
  "data svg link": '<a href="data:image/svg+xml,<svg onload=__ran=1>">x</a>',
  "raw link, newline in scheme": '<a href="jav&#x0A;ascript:__ran=1">x</a>',
  "raw link, control character": '<a href="\u0001javascript:__ran=1">x</a>',
  "raw link, tab and newline": '<a href="java\tscr\nipt:__ran=1">x</a>',
  "raw link, handler": '<a href="https://example.com" onclick="__ran=1" onmouseover="__ran=1">x</a>',
  "title breaking out": '[a](https://example.com "t\\" onmouseover=__ran=1 x=\\"")',
  "image handler": '<img src="x" onerror="__ran=1">',
  "image javascript": "![x](javascript:__ran=1)",
  "image srcset": '<img srcset="javascript:__ran=1 1x">',
  "svg script": "<svg><script>__ran=1</script></svg>",
  "svg animate": '<svg><a><animate attributeName="href" values="javascript:__ran=1"/><text y="20">x</text></a></svg>',
  "math link": '<math><mi xlink:href="javascript:__ran=1">x</mi></math>',
  "script tag": "<script>__ran=1</script>",
  "iframe srcdoc": '<iframe srcdoc="<script>parent.__ran=1</script>"></iframe>',
  "object and embed": '<object data="javascript:__ran=1"></object><embed src="javascript:__ran=1">',
  "details toggle": '<details open ontoggle="__ran=1">x</details>',
  "form action": '<form action="javascript:__ran=1"><button>Approve</button></form>',
  "meta refresh": "<meta http-equiv=refresh content='0;url=javascript:__ran=1'>",
  "base href": "<base href='javascript:__ran=1//'>",
  style: "<style>@import 'javascript:__ran=1'</style><p style='background:url(javascript:__ran=1)'>x</p>",
  "code block": "```html\n</code></pre><img src=x onerror=__ran=1>\n```",
  "inline code": "`</code><img src=x onerror=__ran=1>`",
  "html comment": '<!--><img src="x" onerror="__ran=1">-->',
  "mutation xss": '<noscript><p title="</noscript><img src=x onerror=__ran=1>"></noscript>',
  area: '<map><area href="javascript:__ran=1"></map>',
};

/**
 * What in `#out` could run script or act for the page: script-capable or
 * form elements, event handler and style attributes, and URLs (as the
 * browser resolves them) with a javascript:, vbscript: or (outside images) data: scheme.
 */
const UNSAFE = `window.__unsafe = () => {
  const found = [];
  for (const element of document.getElementById("out").querySelectorAll("*")) {
    const tag = element.tagName.toLowerCase();
    if (/^(script|iframe|frame|object|embed|style|link|meta|base|form|input|button|textarea|select|svg|math|animate|set)$/.test(tag)) found.push(element.outerHTML);
    for (const attribute of element.attributes) {
      if (/^on/i.test(attribute.name) || attribute.name === "style" || attribute.name === "srcset") found.push(element.outerHTML);
      if (!/^(href|src|action|formaction|xlink:href|poster|data|background)$/i.test(attribute.name)) continue;
      let scheme;
      try { scheme = new URL(attribute.value, location.href).protocol; } catch { continue; }
      if (scheme === "javascript:" || scheme === "vbscript:" || (scheme === "data:" && !(tag === "img" && /^\\s*data:image\\/(png|gif|jpeg|webp);/i.test(attribute.value))))
        found.push(element.outerHTML);
    }
  }
  return found;
};`;

async function renderWhole(text: string): Promise<string[]> {
  return page.evaluate(`(() => {
    md.renderMarkdown(document.getElementById("out"), ${JSON.stringify(text)});
    return __unsafe();
  })()`) as Promise<string[]>;
}

/** Streams `text` one character more per update, collecting what was unsafe after any update. */
async function renderStreamed(text: string): Promise<string[]> {
  return page.evaluate(`(() => {
    const text = ${JSON.stringify(text)};
    const view = new md.StreamingMarkdown(document.getElementById("out"));
    const found = [];
    for (let end = 1; end <= text.length; end++) {
      view.update(text.slice(0, end));
      found.push(...__unsafe());
    }
    return found;
  })()`) as Promise<string[]>;
}

async function ran(): Promise<unknown> {
  // Handlers of images that failed to load run after a turn of the event loop.
  await page.waitForTimeout(50);
  return page.evaluate("(() => { const value = window.__ran; delete window.__ran; return value; })()");
}

describe("renderMarkdown on hostile model output", () => {
  for (const [name, text] of Object.entries(HOSTILE)) {
    it(`keeps nothing that could run script: ${name}`, async () => {
      expect(await renderWhole(text)).toEqual([]);
      expect(await ran()).toBeUndefined();
    });
  }

  it("keeps ordinary markdown: links open in a new tab without opener or referrer, code stays text", async () => {
    await renderWhole("See [the docs](https://example.com/a?b=1) and `<b>x</b>`.\n\n```\n<i>y</i>\n```");
    const html = await page.locator("#out").innerHTML();
    expect(html).toContain('<a href="https://example.com/a?b=1" target="_blank" rel="noopener noreferrer">the docs</a>');
    expect(html).toContain("<code>&lt;b&gt;x&lt;/b&gt;</code>");
    expect(html).toContain("&lt;i&gt;y&lt;/i&gt;");
  });
});

describe("StreamingMarkdown on hostile model output, cut at every character", () => {
  it("is as safe after every delta as the whole render", async () => {
    const text = Object.values(HOSTILE).join("\n\n");
    expect(await renderStreamed(text)).toEqual([]);
    expect(await ran()).toBeUndefined();
  });

  it("is safe inside and after a code fence that opens and closes mid-stream", async () => {
    const text = Object.values(HOSTILE)
      .map((payload, i) => (i % 2 === 0 ? `~~~ js onload=x\n${payload}\n~~~\n${payload}` : `\`\`\`\n${payload}\n\`\`\`\n\n${payload}`))
      .join("\n");
    expect(await renderStreamed(text)).toEqual([]);
    expect(await ran()).toBeUndefined();
  });
});
