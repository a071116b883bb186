import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launchChromium } from "../support/chromium.js";

/**
 * The console's streaming markdown renderer in real Chromium, fed delta by
 * delta: how many characters each update hands to the markdown parser (the
 * work per frame, counted rather than timed), and that the streamed
 * rendering ends equal to rendering the whole text at once.
 */

let browser: Browser;
let page: Page;

beforeAll(async () => {
  const bundle = await build({
    entryPoints: [fileURLToPath(new URL("../../web/src/streaming-markdown.ts", import.meta.url))],
    bundle: true,
    format: "iife",
    globalName: "streaming",
    platform: "browser",
    write: false,
    logLevel: "warning",
  });
  const main = await build({
    stdin: {
      contents: 'export { renderMarkdown } from "./markdown.ts";',
      resolveDir: fileURLToPath(new URL("../../web/src/", import.meta.url)),
      loader: "ts",
    },
    bundle: true,
    format: "iife",
    globalName: "markdown",
    platform: "browser",
    write: false,
    logLevel: "warning",
  });
  browser = await launchChromium();
  page = await browser.newPage();
  await page.setContent("<div id=streamed></div><div id=whole></div>");
  await page.addScriptTag({ content: bundle.outputFiles[0]!.text });
  await page.addScriptTag({ content: main.outputFiles[0]!.text });
});

afterAll(async () => {
  await browser?.close();
});

interface Streamed {
  /** Characters parsed by each update. */
  perUpdate: number[];
  /** The streamed rendering's blocks (segments and tail flattened), as HTML. */
  streamed: string;
  /** The whole text rendered at once, as HTML. */
  whole: string;
}

/** Feeds `text` to a StreamingMarkdown in pieces of `piece` characters, one update per piece (as one per frame). */
function stream(text: string, piece: number): Promise<Streamed> {
  return page.evaluate(`(() => {
    const text = ${JSON.stringify(text)};
    const streamedRoot = document.getElementById("streamed");
    const wholeRoot = document.getElementById("whole");
    const view = new streaming.StreamingMarkdown(streamedRoot);
    const perUpdate = [];
    for (let end = ${piece}; ; end += ${piece}) {
      const before = view.parsed;
      view.update(text.slice(0, Math.min(end, text.length)));
      perUpdate.push(view.parsed - before);
      if (end >= text.length) break;
    }
    markdown.renderMarkdown(wholeRoot, text);
    const blocks = [...streamedRoot.children].flatMap((part) => [...part.children]);
    return {
      perUpdate,
      streamed: blocks.map((block) => block.outerHTML).join(""),
      whole: [...wholeRoot.children].map((block) => block.outerHTML).join(""),
    };
  })()`) as Promise<Streamed>;
}

describe("StreamingMarkdown", () => {
  it("does not re-parse one long code block on every update, and ends equal to the whole text rendered at once", async () => {
    const lines = Array.from({ length: 2_000 }, (_, i) => `const line${i} = "<${i}> & more";`);
    const text = `Here is the file:\n\`\`\`ts\n${lines.join("\n")}\n\`\`\`\nThat is **all**.`;
    const { perUpdate, streamed, whole } = await stream(text, 40);
    expect(perUpdate.length).toBeGreaterThan(1_000);
    // The fence is parsed once when its closing line arrives; every other update parses only its short neighbourhood.
    const sorted = [...perUpdate].sort((a, b) => b - a);
    expect(sorted[0]).toBeLessThanOrEqual(text.length);
    expect(sorted[1]).toBeLessThanOrEqual(100);
    expect(perUpdate.reduce((sum, n) => sum + n, 0)).toBeLessThan(2 * text.length);
    expect(streamed).toContain('<code class="language-ts">');
    expect(streamed).toBe(whole);
  });

  it("shows an open fence's body as code while it streams", async () => {
    const text = "Intro\n~~~\n<b>not bold</b>\nsecond";
    await stream(text, 7);
    expect(await page.locator("#streamed pre code").textContent()).toMatch(/^<b>not bold<\/b>\nsecond\n?$/);
    expect(await page.locator("#streamed b").count()).toBe(0);
    expect(await page.locator("#streamed p").textContent()).toBe("Intro");
  });

  it("still re-parses only the paragraph growing after the last blank line, fences with blank lines kept whole", async () => {
    const paragraphs = Array.from({ length: 50 }, (_, i) => `Paragraph ${i} with *emphasis*.`);
    const text = `${paragraphs.slice(0, 25).join("\n\n")}\n\n\`\`\`\none\n\ntwo\n\`\`\`\n\n${paragraphs.slice(25).join("\n\n")}\n`;
    const { perUpdate, streamed, whole } = await stream(text, 5);
    expect(Math.max(...perUpdate)).toBeLessThanOrEqual(60);
    expect(streamed).toBe(whole);
  });
});
