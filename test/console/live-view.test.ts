import { cpSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { BusyPolicy, type WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { WorkerInteraction } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import { CreateWorkerResponseSchema, WorkerCatalog } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { WatchWorkerRequestSchema, WorkerObservation } from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import type { FakeOpenAI } from "../support/fake-openai.js";
import { reply, replyChunks } from "../support/openai-chunks.js";
import { type ConsoleWithProvider, startConsole, startConsoleWithBrowser } from "./console-process.js";

// Every poll here waits for Chromium to show what a real server sent (a page load, a watch's
// round trips, a frame): correct but slow work that takes seconds on a loaded machine, far past
// expect.poll's 1 s default (console.test.ts failed that way on a reload).
// The file's polls get 20 s, as the rest of its polls already said one by one; what they assert
// is unchanged, and a poll still ends as soon as its assertion holds.
vi.setConfig({ expect: { poll: { timeout: 20_000 } } });

/**
 * The chat's live view in real headless Chromium against `npm start`'s entry
 * and the fake provider: what model output may put on the page, and what is
 * left on it when a run ends. (The main walk-through is console.test.ts.)
 */

let browser: Browser;
let fake: FakeOpenAI;
let server: ConsoleWithProvider;
const pages: Page[] = [];

beforeAll(async () => {
  server = await startConsoleWithBrowser({ dataDirPrefix: "console-live-" });
  ({ browser, fake } = server);
});

afterAll(async () => {
  await server?.close();
});

/**
 * Records every element put into a transcript entry (live or committed) that
 * model output must not produce: style sheets, form controls, frames,
 * scripts, event handlers, inline styles, script or data links.
 */
const UNSAFE_RECORDER = `
  window.__unsafe = [];
  const check = (element) => {
    if (!element.closest(".entry")) return;
    if (/^(style|link|meta|form|input|button|textarea|select|iframe|object|embed|script)$/i.test(element.tagName))
      window.__unsafe.push(element.outerHTML);
    for (const attribute of element.attributes) {
      if (/^on/i.test(attribute.name) || attribute.name === "style" || /^\\s*javascript:/i.test(attribute.value) ||
          (attribute.name === "href" && /^\\s*data:/i.test(attribute.value)))
        window.__unsafe.push(element.outerHTML);
    }
  };
  new MutationObserver((records) => {
    for (const record of records)
      for (const node of record.addedNodes) {
        if (!(node instanceof Element)) continue;
        check(node);
        for (const inner of node.querySelectorAll("*")) check(inner);
      }
  }).observe(document.body, { subtree: true, childList: true });
`;

/** A page script making the page see itself hidden or shown, as when another tab is brought to the front (headless pages never are hidden). */
function setVisibility(state: "hidden" | "visible"): string {
  return `(() => {
    Object.defineProperty(document, "visibilityState", { configurable: true, get: () => ${JSON.stringify(state)} });
    Object.defineProperty(document, "hidden", { configurable: true, get: () => ${JSON.stringify(state === "hidden")} });
    document.dispatchEvent(new Event("visibilitychange"));
    return document.visibilityState;
  })()`;
}

/**
 * A page script making the browser's connection fail right after the first
 * message (the snapshot) of the next WatchWorker response, before the events
 * replayed behind it: the narrowest cut a resumed watch can meet. fetch is
 * the browser's, wrapped before the console loads (connect-web takes it then).
 */
const CUT_AFTER_SNAPSHOT = `
  window.__cutNextWatch = false;
  const realFetch = window.fetch;
  window.fetch = async (input, init) => {
    const response = await realFetch(input, init);
    const url = typeof input === "string" ? input : input.url;
    if (!window.__cutNextWatch || !url.endsWith("/WatchWorker")) return response;
    window.__cutNextWatch = false;
    const reader = response.body.getReader();
    let buffer = new Uint8Array(0);
    let sent = false;
    const body = new ReadableStream({
      async pull(controller) {
        if (sent) {
          void reader.cancel();
          controller.error(new TypeError("network error"));
          return;
        }
        for (;;) {
          if (buffer.length >= 5) {
            const length = new DataView(buffer.buffer, buffer.byteOffset).getUint32(1);
            if (buffer.length >= 5 + length) {
              controller.enqueue(buffer.slice(0, 5 + length));
              sent = true;
              return;
            }
          }
          const { value, done } = await reader.read();
          if (done) return controller.close();
          const joined = new Uint8Array(buffer.length + value.length);
          joined.set(buffer);
          joined.set(value, buffer.length);
          buffer = joined;
        }
      },
    });
    return new Response(body, { status: response.status, headers: response.headers });
  };
`;

/** A new page on a new companion's chat. */
async function newCompanion(): Promise<Page> {
  const page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
  pages.push(page);
  await page.goto(server.url);
  await page.getByRole("button", { name: "New companion" }).click();
  await page.waitForURL(/#\/w\//, { timeout: 20_000 });
  return page;
}

/** The worker of the chat open in `page`, and a gRPC client to seed it with runs (the page only watches them). */
function chatWorker(page: Page): { worker: WorkerRef; interaction: ReturnType<typeof createClient<typeof WorkerInteraction>> } {
  const [, runtimeId, workerId] = /#\/w\/([^/]+)\/([^/]+)$/.exec(page.url())!;
  const worker = { runtimeId: decodeURIComponent(runtimeId!), workerId: decodeURIComponent(workerId!) } as WorkerRef;
  return { worker, interaction: createClient(WorkerInteraction, createGrpcTransport({ baseUrl: `http://${server.h2c}` })) };
}

/** `count` questions answered in full, numbered from `from`, sent over gRPC. */
async function answeredRounds(page: Page, from: number, count: number): Promise<void> {
  const { worker, interaction } = chatWorker(page);
  for (let i = from; i < from + count; i++) {
    fake.enqueue(reply({ text: `answer ${i}` }));
    for await (const message of interaction.streamInput({ worker, input: { text: `question ${i}` }, busyPolicy: BusyPolicy.REJECT })) {
      void message;
    }
  }
}

/** The `data-seq` of every committed entry shown, in page order. */
async function shownSeqs(page: Page): Promise<number[]> {
  return (await page.locator(".log .entry").evaluateAll((elements) => elements.map((element) => element.getAttribute("data-seq")))).map(
    Number,
  );
}

/** Scrolls to the top until the first entry (seq 1) is shown, a history page at a time. */
async function scrollToOldest(page: Page): Promise<void> {
  for (let i = 0; i < 20 && (await shownSeqs(page))[0] !== 1; i++) {
    const first = (await shownSeqs(page))[0];
    await page.locator(".scroller").evaluate((element) => {
      element.scrollTop = 0;
    });
    await expect.poll(async () => (await shownSeqs(page))[0], { timeout: 20_000 }).not.toBe(first);
  }
  expect((await shownSeqs(page))[0]).toBe(1);
}

/**
 * Makes the chat's watch lose its cursor, as an expired one or one of a
 * restored store is refused by the Backend: the page is hidden (its watch
 * ends), `meanwhile` runs, and the watch resumed when the page is shown again
 * asks with a cursor the Backend refuses, so the chat re-syncs from a fresh
 * snapshot and the newest page.
 */
async function loseWatchCursor(page: Page, meanwhile: () => Promise<void>): Promise<void> {
  expect(await page.evaluate(setVisibility("hidden"))).toBe("hidden");
  await meanwhile();
  let refuseCursor = true;
  let refused = false;
  await page.route("**/WatchWorker", async (route) => {
    const body = route.request().postDataBuffer();
    if (!refuseCursor || !body) return route.continue();
    refuseCursor = false;
    const request = fromBinary(WatchWorkerRequestSchema, body.subarray(5));
    request.afterCursor = "not-a-cursor";
    const message = toBinary(WatchWorkerRequestSchema, request);
    const envelope = Buffer.alloc(5 + message.length);
    envelope.writeUInt32BE(message.length, 1);
    envelope.set(message, 5);
    await route.continue({ postData: envelope });
    refused = true;
  });
  expect(await page.evaluate(setVisibility("visible"))).toBe("visible");
  await expect.poll(() => refused, { timeout: 20_000 }).toBe(true);
  await page.unroute("**/WatchWorker");
}

/** A promise a test resolves when it chose to: holds the fake provider's stream at a point (its `waitBefore`). */
function hold(): { promise: Promise<void>; release: () => void } {
  let release = (): void => {};
  const promise = new Promise<void>((resolve) => {
    release = resolve;
  });
  return { promise, release };
}

async function send(page: Page, text: string): Promise<void> {
  await page.locator("textarea.input").fill(text);
  await page.keyboard.press("Enter");
}

describe("the live view", () => {
  it("clears a tool call that was still streaming when the run was stopped, in every tab", async () => {
    const page = await newCompanion();
    const other = await browser.newPage({ viewport: { width: 1200, height: 800 } });
    pages.push(other);
    await other.goto(page.url());
    fake.enqueue({
      kind: "stream",
      chunks: replyChunks({ toolCalls: [{ id: "call-1", name: "list_files", arguments: `{"path":"${"a".repeat(400)}"}` }], pieceSize: 2 }),
      delayMs: 20,
      end: "hang",
    });
    await send(page, "List the files, slowly");
    for (const tab of [page, other]) {
      await expect.poll(() => tab.locator(".live .entry.tool-call").count(), { timeout: 20_000 }).toBe(1);
    }
    await page.getByRole("button", { name: "Stop" }).click();
    for (const tab of [page, other]) {
      await expect.poll(() => tab.locator(".log .stopped").count(), { timeout: 20_000 }).toBe(1);
      // The run is over: nothing of it is still "streaming", as after a reload.
      await expect.poll(() => tab.locator(".live .entry").count()).toBe(0);
    }
  });

  it("shows model output as text and formatting only: no styles, forms, controls, handlers or script links", async () => {
    const page = await newCompanion();
    await page.evaluate(UNSAFE_RECORDER);
    const hostile = [
      "Plain **bold** start.",
      '<style>body { display: none }</style><link rel="stylesheet" href="/x.css">',
      '<form action="/worker_runtime.v1.WorkerCatalog/DeleteWorker"><input name="q" value="x"><textarea>t</textarea><select><option>o</option></select><button>Approve</button></form>',
      '<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" onerror="document.title=1"> <a href="javascript:document.title=2">link</a> <p style="position:fixed;inset:0">cover</p>',
      '<iframe srcdoc="<p>x</p>"></iframe><svg><script>document.title=3</script></svg>',
      "Plain end.",
    ].join("\n\n");
    fake.enqueue(reply({ text: hostile, pieceSize: 7 }, { delayMs: 5 }));
    await send(page, "Say something nasty");
    await expect.poll(() => page.locator(".log .entry.assistant").count(), { timeout: 20_000 }).toBe(1);
    const shown = (await page.locator(".log .entry.assistant").textContent()) ?? "";
    expect(shown).toContain("Plain bold start.");
    expect(shown).toContain("Plain end.");
    await expect(page.locator(".log .entry.assistant strong").textContent()).resolves.toBe("bold");
    expect(await page.evaluate(() => (globalThis as unknown as { __unsafe: string[] }).__unsafe)).toEqual([]);
    expect(await page.title()).toBe("worker-runtime console");
    // The page's own controls are all there is to press.
    expect(await page.getByRole("button", { name: "Approve" }).count()).toBe(0);
  });

  it("runs no script from a hostile answer, streamed or committed, even when its links are clicked", async () => {
    const page = await newCompanion();
    const dialogs: string[] = [];
    page.on("dialog", (dialog) => {
      dialogs.push(dialog.message());
      void dialog.dismiss();
    });
    const popups: string[] = [];
    page.context().on("page", (popup) => popups.push(popup.url()));
    // A script the page ran for the answer would set __ran; one the CSP stopped would raise a violation.
    await page.evaluate(`(() => {
      window.__violations = [];
      document.addEventListener("securitypolicyviolation", (event) => window.__violations.push(event.violatedDirective + " " + event.blockedURI));
    })()`);
    const hostile = [
      "Click [here](javascript:__ran=1) or [there](JaVaScRiPt:alert(1)) or [elsewhere](java&#x09;script:alert(2)).",
      '<a href="jav&#x0A;ascript:__ran=2">raw</a> <a href="\u0001javascript:__ran=3">ctl</a> <a href="data:text/html,<script>alert(3)</script>">data</a>',
      "[ref]: vbscript:msgbox(1)\n\nSee [ref] and <javascript:__ran=4>.",
      '<img src="x" onerror="__ran=5"> <svg><script>__ran=6</script></svg> <details open ontoggle="__ran=7">d</details>',
      '<script>__ran=8</script><iframe srcdoc="<script>parent.__ran=9</script>"></iframe>',
      "```html\n</code></pre><img src=x onerror=__ran=10>\n```",
      '<noscript><p title="</noscript><img src=x onerror=__ran=11>"></noscript>',
      "The end.",
    ].join("\n\n");
    fake.enqueue(reply({ text: hostile, reasoning: '<img src=x onerror="__ran=12">', pieceSize: 3 }, { delayMs: 2 }));
    await send(page, "Say something hostile");
    await expect.poll(() => page.locator(".log .entry.assistant").textContent(), { timeout: 20_000 }).toContain("The end.");
    // The answer's own links. Its <img src="x"> is now a link to that address (a web URL, same
    // origin), which opens it like any http link when clicked: the media test covers it.
    const links = page.locator(".log .entry.assistant a:not(.media)");
    expect(await page.locator(".log .entry.assistant a.media").evaluateAll((all) => all.map((a) => a.getAttribute("href")))).toEqual(["x"]);
    expect(await links.count()).toBeGreaterThanOrEqual(5);
    for (let i = 0; i < (await links.count()); i++) await links.nth(i).click();
    // A round trip through the page after the clicks: what they started has run.
    await page.evaluate("new Promise((resolve) => setTimeout(resolve, 0))");
    expect(await page.evaluate("window.__ran")).toBeUndefined();
    expect(await page.evaluate("window.__violations")).toEqual([]);
    expect(dialogs).toEqual([]);
    expect(popups).toEqual([]);
    expect(await page.title()).toBe("worker-runtime console");
  });

  it("shows the images, video and audio a model writes as links to their address, fetching none of them", async () => {
    const page = await newCompanion();
    const requested: string[] = [];
    page.on("request", (request) => {
      if (/media-probe|example\.com/.test(request.url())) requested.push(request.url());
    });
    // Media put anywhere in an entry, live or committed, and what the CSP had to block.
    await page.evaluate(`(() => {
      window.__media = [];
      window.__violations = [];
      document.addEventListener("securitypolicyviolation", (event) => window.__violations.push(event.violatedDirective + " " + event.blockedURI));
      new MutationObserver(() => {
        for (const element of document.querySelectorAll(".entry img, .entry picture, .entry video, .entry audio, .entry source, .entry [background]"))
          if (!window.__media.includes(element.outerHTML)) window.__media.push(element.outerHTML);
      }).observe(document.body, { subtree: true, childList: true, attributes: true });
    })()`);
    const media = [
      "![a chart](/media-probe/chart.png) and [![linked](/media-probe/linked.png)](https://example.org/page)",
      '<img src="/media-probe/raw.png" alt="raw image"> <img src="https://example.com/remote.png">',
      '<picture><source srcset="/media-probe/wide.webp 2x"><img src="/media-probe/fallback.png" alt="a picture"></picture>',
      '<video src="/media-probe/clip.mp4" poster="/media-probe/poster.png"></video> <audio controls><source src="/media-probe/sound.mp3"></audio>',
      '<table background="/media-probe/table.png"><tr><td>cell</td></tr></table>',
      '<img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=" alt="inline"> <img src="data:image/gif;base64,R0lGODlhAQABAAAAACw=">',
      "The end.",
    ].join("\n\n");
    fake.enqueue(reply({ text: media, pieceSize: 9 }, { delayMs: 2 }));
    await send(page, "Show me pictures");
    await expect.poll(() => page.locator(".log .entry.assistant").textContent(), { timeout: 20_000 }).toContain("The end.");
    // A round trip through the page: a fetch the render started has been issued.
    await page.evaluate("new Promise((resolve) => setTimeout(resolve, 0))");
    expect(requested).toEqual([]);
    expect(await page.evaluate("window.__media")).toEqual([]);
    expect(await page.evaluate("window.__violations")).toEqual([]);
    const links = await page
      .locator(".log .entry.assistant .media")
      .evaluateAll((elements) => elements.map((element) => [element.localName, element.getAttribute("href"), element.textContent]));
    expect(links).toEqual([
      ["a", "/media-probe/chart.png", "image: a chart"],
      ["span", null, "image: linked"],
      ["a", "/media-probe/raw.png", "image: raw image"],
      ["a", "https://example.com/remote.png", "image: https://example.com/remote.png"],
      ["a", "/media-probe/fallback.png", "image: a picture"],
      ["a", "/media-probe/clip.mp4", "video: /media-probe/clip.mp4"],
      ["a", "/media-probe/sound.mp3", "audio: /media-probe/sound.mp3"],
      ["span", null, "image: inline"],
      ["span", null, "image"],
    ]);
    await expect(page.locator(".log .entry.assistant td").textContent()).resolves.toBe("cell");
  });

  it("renders a long answer's finished paragraphs once, re-rendering only the paragraph still growing", async () => {
    const page = await newCompanion();
    const paragraphs = Array.from({ length: 40 }, (_, i) => `Paragraph ${i + 1} with **bold** text and more words to make it longer.`);
    // A code fence with a blank line inside: not a place to split, or the preview would break the fence.
    const text = `${paragraphs.slice(0, 20).join("\n\n")}\n\n\`\`\`\nfenced line one\n\nfenced line two\n\`\`\`\n\n${paragraphs.slice(20).join("\n\n")}`;
    fake.enqueue(reply({ text, pieceSize: 12 }, { delayMs: 8 }));
    await send(page, "Write at length");
    const first = page.locator(".live .entry.assistant p").first();
    await expect
      .poll(async () => (await page.locator(".live .entry.assistant").textContent()) ?? "", { timeout: 20_000 })
      .toContain("Paragraph 3 ");
    // Tag the first paragraph's element; if the view re-parsed everything on each frame, it would be replaced.
    await first.evaluate((element) => element.setAttribute("data-tagged", "yes"));
    await expect
      .poll(async () => (await page.locator(".live .entry.assistant").textContent()) ?? "", { timeout: 20_000 })
      .toContain("fenced line two");
    expect(await page.locator('.live .entry.assistant p[data-tagged="yes"]').count()).toBe(1);
    // The fence shows as one code block while it streams, blank line and all.
    await expect
      .poll(async () => (await page.locator(".live .entry.assistant").textContent()) ?? "", { timeout: 20_000 })
      .toContain("Paragraph 25");
    expect(await page.locator(".live .entry.assistant pre code").allTextContents()).toEqual(["fenced line one\n\nfenced line two\n"]);
    // Committed, it is the whole answer rendered at once.
    await expect.poll(() => page.locator(".log .entry.assistant p").count(), { timeout: 20_000 }).toBe(40);
    expect(await page.locator(".log .entry.assistant strong").count()).toBe(40);
  });

  it("streams an answer that is one long code block without re-rendering it each frame, and commits it as a whole render", async () => {
    const page = await newCompanion();
    const lines = Array.from({ length: 300 }, (_, i) => `print("line ${i} <b>not bold</b>")`);
    const code = `${lines.join("\n")}\n`;
    const text = `Here it is:\n\`\`\`py\n${code}\`\`\`\nDone.`;
    // The stream is held twice while the fence is open: once its 20th line is out, and once its 250th is.
    // What the view shows there lasts only until the stream goes on: the fence's closing line (rightly)
    // renders it as markdown, a new code element, and a check after that failed now and then under load.
    const pieceSize = 40;
    /** The index of the chunk after the one that completes `needle` (chunk 0 is the role, then a piece per chunk). */
    const chunkAfter = (needle: string): number => 2 + Math.floor((text.indexOf(needle) + needle.length - 1) / pieceSize);
    const [at20, at250] = [hold(), hold()];
    fake.enqueue(
      reply(
        { text, pieceSize },
        { delayMs: 3, waitBefore: { [chunkAfter('print("line 20 ')]: at20.promise, [chunkAfter('print("line 250 ')]: at250.promise } },
      ),
    );
    try {
      await send(page, "Write a long program");
      const live = page.locator(".live .entry.assistant pre code");
      await expect
        .poll(async () => (await live.count()) === 1 && ((await live.textContent()) ?? "").includes("line 20 "), { timeout: 20_000 })
        .toBe(true);
      // Tag the code element; re-parsing the fence on a later frame would replace it.
      await live.evaluate((element) => element.setAttribute("data-tagged", "yes"));
      at20.release();
      await expect.poll(async () => (await live.textContent()) ?? "", { timeout: 20_000 }).toContain("line 250 ");
      expect(await page.locator('.live .entry.assistant pre code[data-tagged="yes"]').count()).toBe(1);
      expect(await page.locator(".live .entry.assistant b").count()).toBe(0);
    } finally {
      at20.release();
      at250.release();
    }
    await expect.poll(() => page.locator(".log .entry.assistant").count(), { timeout: 20_000 }).toBe(1);
    await expect(page.locator(".log .entry.assistant pre code.language-py").textContent()).resolves.toBe(code);
    await expect(page.locator(".log .entry.assistant p").allTextContents()).resolves.toEqual(["Here it is:", "Done."]);
  });

  it("sends a message once on a quick double Enter, with no false busy error", async () => {
    const page = await newCompanion();
    await expect.poll(() => page.locator(".chat-header .status").textContent(), { timeout: 20_000 }).toContain("idle");
    fake.enqueue(reply({ text: "Answered once.", pieceSize: 4 }, { delayMs: 10 }));
    await page.locator("textarea.input").fill("Hello twice?");
    // Both presses in one task: the second comes while the first SendInput is surely still in flight.
    await page.evaluate(`(() => {
      const input = document.querySelector("textarea.input");
      for (let i = 0; i < 2; i++) input.dispatchEvent(new KeyboardEvent("keydown", { key: "Enter", bubbles: true, cancelable: true }));
    })()`);
    await expect.poll(() => page.locator(".log .entry.assistant").textContent(), { timeout: 20_000 }).toContain("Answered once.");
    expect(await page.locator(".log .entry.user").allTextContents()).toEqual(["Hello twice?"]);
    expect(await page.locator(".chat .error").isHidden()).toBe(true);
    expect(await page.locator("button.send").isEnabled()).toBe(true);
    expect(await page.locator("textarea.input").inputValue()).toBe("");
  });

  it("keeps what the reader typed while the message before was being sent", async () => {
    const page = await newCompanion();
    await expect.poll(() => page.locator(".chat-header .status").textContent(), { timeout: 20_000 }).toContain("idle");
    fake.enqueue(reply({ text: "Got the first." }));
    // SendInput's answer is held until the reader has begun the next message.
    let answer: (() => void) | undefined;
    await page.route("**/SendInput", async (route) => {
      const response = await route.fetch();
      await new Promise<void>((resolve) => {
        answer = resolve;
      });
      await route.fulfill({ response });
    });
    await send(page, "The first message");
    await expect.poll(() => answer !== undefined, { timeout: 20_000 }).toBe(true);
    await expect.poll(() => page.locator("button.send").isDisabled()).toBe(true);
    await page.locator("textarea.input").fill("The second, half-written");
    answer?.();
    // The send button comes back once SendInput's answer was handled.
    await expect.poll(() => page.locator("button.send").isEnabled()).toBe(true);
    expect(await page.locator("textarea.input").inputValue()).toBe("The second, half-written");
    await expect.poll(() => page.locator(".log .entry.assistant").textContent(), { timeout: 20_000 }).toContain("Got the first.");
    expect(await page.locator(".log .entry.user").allTextContents()).toEqual(["The first message"]);
    await page.unroute("**/SendInput");
  });

  it("stays on the worker the reader picked while New companion was being created: the new companion only appears in the list", async () => {
    const page = await newCompanion();
    const { worker } = chatWorker(page);
    const catalog = createClient(WorkerCatalog, createGrpcTransport({ baseUrl: `http://${server.h2c}` }));
    const picked = (
      await catalog.createWorker({
        runtimeId: worker.runtimeId,
        displayName: "Picked meanwhile",
        profile: { source: { case: "builtin", value: "companion" } },
      })
    ).worker!.ref!;
    const pickedRoute = `#/w/${encodeURIComponent(picked.runtimeId)}/${encodeURIComponent(picked.workerId)}`;
    // CreateWorker's answer (the Backend has made the companion) is held until the reader has moved on.
    let answer: (() => void) | undefined;
    let created: WorkerRef | undefined;
    await page.route("**/CreateWorker", async (route) => {
      const response = await route.fetch();
      created = fromBinary(CreateWorkerResponseSchema, await response.body()).worker?.ref;
      await new Promise<void>((resolve) => {
        answer = resolve;
      });
      await route.fulfill({ response });
    });
    try {
      await page.getByRole("button", { name: "New companion" }).click();
      await expect.poll(() => answer !== undefined, { timeout: 20_000 }).toBe(true);
      await page.getByRole("link", { name: "Picked meanwhile" }).click();
      await expect.poll(() => page.locator(".chat-header h2").textContent()).toBe("Picked meanwhile");
      const answered = page.waitForEvent("requestfinished", {
        predicate: (request) => request.url().endsWith("/CreateWorker"),
        timeout: 20_000,
      });
      answer?.();
      await answered;
      // Listed once the answer was handled (the old code had switched the chat before listing it).
      const createdRoute = `#/w/${encodeURIComponent(created!.runtimeId)}/${encodeURIComponent(created!.workerId)}`;
      await expect.poll(() => page.locator(`.sidebar a[href="${createdRoute}"]`).count()).toBe(1);
      expect(new URL(page.url()).hash).toBe(pickedRoute);
      expect(await page.locator(".chat-header h2").textContent()).toBe("Picked meanwhile");
      expect(await page.locator(".sidebar .worker.selected a").textContent()).toBe("Picked meanwhile");
    } finally {
      answer?.();
      await page.unroute("**/CreateWorker");
    }
  });

  it("survives a malformed chat address: the sidebar still loads and the chat says there is nothing to show", async () => {
    const page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
    pages.push(page);
    const errors: string[] = [];
    page.on("pageerror", (error) => errors.push(error.message));
    await page.goto(`${server.url}#/w/%E0%A4%A/worker`);
    await expect.poll(() => page.locator(".health.ready").count(), { timeout: 20_000 }).toBe(1);
    await expect(page.locator(".main .empty").textContent()).resolves.toContain("Pick a worker");
    expect(errors).toEqual([]);
  });

  it("lets a seventh tab work: background tabs give back the connection their watch held, and resume when shown", async () => {
    // A browser opens at most 6 HTTP/1.1 connections to one origin, shared by its tabs; each chat's watch holds one.
    const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
    try {
      const tabs: Page[] = [];
      for (let i = 0; i < 6; i++) {
        const tab = await context.newPage();
        await tab.goto(server.url);
        await tab.getByRole("button", { name: "New companion" }).click();
        await tab.waitForURL(/#\/w\//, { timeout: 20_000 });
        await expect.poll(() => tab.locator(".chat-header .status").textContent(), { timeout: 20_000 }).toContain("idle");
        // Another tab is brought to the front: this one is hidden, as the browser tells it.
        expect(await tab.evaluate(setVisibility("hidden"))).toBe("hidden");
        tabs.push(tab);
      }
      const seventh = await context.newPage();
      await seventh.goto(server.url, { timeout: 20_000 });
      await seventh.getByRole("button", { name: "New companion" }).click();
      await seventh.waitForURL(/#\/w\//, { timeout: 20_000 });
      fake.enqueue(reply({ text: "The seventh tab is answered.", pieceSize: 5 }, { delayMs: 5 }));
      await send(seventh, "Anyone there?");
      await expect.poll(() => seventh.locator(".log .entry.assistant").textContent(), { timeout: 20_000 }).toContain("seventh tab");

      // Shown again, a tab watches again, from where it left off.
      const first = tabs[0]!;
      await seventh.close();
      expect(await first.evaluate(setVisibility("visible"))).toBe("visible");
      fake.enqueue(reply({ text: "The first tab is back.", pieceSize: 5 }, { delayMs: 5 }));
      await send(first, "And you?");
      await expect.poll(() => first.locator(".log .entry.assistant").textContent(), { timeout: 20_000 }).toContain("first tab is back");
      expect(await first.locator(".banner").isHidden()).toBe(true);
    } finally {
      await context.close();
    }
  });

  it("shows what was committed while the tab was away, even when the resumed watch is cut right after its snapshot", async () => {
    const page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
    pages.push(page);
    await page.addInitScript(CUT_AFTER_SNAPSHOT);
    await page.goto(server.url);
    await page.getByRole("button", { name: "New companion" }).click();
    await page.waitForURL(/#\/w\//, { timeout: 20_000 });
    fake.enqueue(reply({ text: "Seen live.", pieceSize: 5 }));
    await send(page, "Before going away");
    await expect.poll(() => page.locator(".log .entry.assistant").textContent(), { timeout: 20_000 }).toContain("Seen live.");

    // Hidden, the tab gives up its watch; a message sent meanwhile is answered and committed.
    expect(await page.evaluate(setVisibility("hidden"))).toBe("hidden");
    const [, runtimeId, workerId] = /#\/w\/([^/]+)\/([^/]+)$/.exec(page.url())!;
    const observation = createClient(WorkerObservation, createGrpcTransport({ baseUrl: `http://${server.h2c}` }));
    const worker = { runtimeId: decodeURIComponent(runtimeId!), workerId: decodeURIComponent(workerId!) };
    fake.enqueue(reply({ text: "Committed while away.", pieceSize: 5 }));
    await send(page, "While away");
    await expect.poll(async () => (await observation.readTranscript({ worker, limit: 10 })).entries.length, { timeout: 20_000 }).toBe(4);

    // Shown again, the watch resumes, and its connection drops just after the snapshot.
    await page.evaluate("window.__cutNextWatch = true");
    expect(await page.evaluate(setVisibility("visible"))).toBe("visible");
    await expect.poll(() => page.evaluate("window.__cutNextWatch")).toBe(false);
    await expect
      .poll(() => page.locator(".log .entry.user").allTextContents(), { timeout: 20_000 })
      .toEqual(["Before going away", "While away"]);
    await expect(page.locator(".log .entry.assistant").last().textContent()).resolves.toContain("Committed while away.");
  });

  it("reads older history during a re-sync from a lost cursor without leaving a gap: a page asked for before is not put after", async () => {
    const page = await newCompanion();
    await expect.poll(() => page.locator(".chat-header .status").textContent(), { timeout: 20_000 }).toContain("idle");
    await answeredRounds(page, 1, 40);
    // Reloaded, the page shows the newest 30 entries (51..80), and reads older ones when scrolled up.
    await page.reload();
    await expect.poll(() => page.locator(".log .entry.user").last().textContent(), { timeout: 20_000 }).toBe("question 40");
    expect((await shownSeqs(page))[0]).toBe(51);

    // The older page (before 51) is asked for, and its answer held back.
    let older: (() => void) | undefined;
    let held = false;
    await page.route("**/ReadTranscript", async (route) => {
      if (held) return route.continue();
      held = true;
      await new Promise<void>((resolve) => {
        older = resolve;
      });
      await route.continue();
    });
    await page.locator(".scroller").evaluate((element) => {
      element.scrollTop = 0;
    });
    await expect.poll(() => held, { timeout: 20_000 }).toBe(true);

    // Meanwhile the watch loses its cursor (refused by the Backend, as an expired one or one of a restored store
    // is) after 30 more rounds: the chat starts again from the newest page (111..140).
    await loseWatchCursor(page, () => answeredRounds(page, 41, 30));
    await expect.poll(async () => (await shownSeqs(page))[0], { timeout: 20_000 }).toBe(111);
    await expect.poll(() => page.locator(".log .entry.user").last().textContent()).toBe("question 70");

    // The page asked for before the re-sync (21..50) arrives: it does not belong under the new tail.
    const answered = page.waitForResponse("**/ReadTranscript", { timeout: 20_000 });
    older?.();
    await answered;
    await scrollToOldest(page);
    expect(await shownSeqs(page)).toEqual(Array.from({ length: 140 }, (_, i) => i + 1));
    expect(await page.locator(".log .entry.user").allTextContents()).toEqual(Array.from({ length: 70 }, (_, i) => `question ${i + 1}`));
    await page.unroute("**/ReadTranscript");
    // 70 answered rounds through the browser: 52 s of the default 60 s were seen at load 15 on 2 cores.
  }, 150_000);

  it("says nothing when an older page asked for before a re-sync fails, and says why when one asked for after it fails", async () => {
    const page = await newCompanion();
    await expect.poll(() => page.locator(".chat-header .status").textContent(), { timeout: 20_000 }).toContain("idle");
    await answeredRounds(page, 1, 16);
    // Reloaded, the page shows the newest 30 entries (3..32), and reads older ones when scrolled up.
    await page.reload();
    await expect.poll(() => page.locator(".log .entry.user").last().textContent(), { timeout: 20_000 }).toBe("question 16");
    expect((await shownSeqs(page))[0]).toBe(3);

    // The older page (before 3) is asked for, and held.
    let failOlder: (() => void) | undefined;
    let held = false;
    await page.route("**/ReadTranscript", async (route) => {
      if (held) return route.continue();
      held = true;
      await new Promise<void>((resolve) => {
        failOlder = resolve;
      });
      await route.abort("connectionreset");
    });
    await page.locator(".scroller").evaluate((element) => {
      element.scrollTop = 0;
    });
    await expect.poll(() => held, { timeout: 20_000 }).toBe(true);

    // Meanwhile the watch loses its cursor after 2 more rounds: the chat starts again from the newest page (7..36).
    await loseWatchCursor(page, () => answeredRounds(page, 17, 2));
    await expect.poll(async () => (await shownSeqs(page))[0], { timeout: 20_000 }).toBe(7);
    await expect.poll(() => page.locator(".log .entry.user").last().textContent()).toBe("question 18");

    // The page asked for before the re-sync fails: it was for a log that is gone, so its failure is no news to the reader.
    const failed = page.waitForEvent("requestfailed", {
      predicate: (request) => request.url().endsWith("/ReadTranscript"),
      timeout: 20_000,
    });
    failOlder?.();
    await failed;
    // Paging back (each page a round trip the failure's handling is long done by) reads the rest.
    await scrollToOldest(page);
    expect(await shownSeqs(page)).toEqual(Array.from({ length: 36 }, (_, i) => i + 1));
    expect(
      await page.locator(".chat .error").evaluate((element) => ((element as { hidden?: boolean }).hidden ? "" : element.textContent)),
    ).toBe("");
    await page.unroute("**/ReadTranscript");

    // An older page asked for by the chat on screen that fails is still said.
    await page.reload();
    await expect.poll(async () => (await shownSeqs(page))[0], { timeout: 20_000 }).toBe(7);
    await page.route("**/ReadTranscript", (route) => route.abort("connectionreset"));
    await page.locator(".scroller").evaluate((element) => {
      element.scrollTop = 0;
    });
    await expect
      .poll(() => page.locator(".chat .error").textContent())
      .toBe("Cannot reach the console's server. Is npm start still running?");
    expect(await page.locator(".chat .error").isVisible()).toBe(true);
    expect((await shownSeqs(page))[0]).toBe(7);
    await page.unroute("**/ReadTranscript");
  });

  it("marks every stopped run, past the newest 100 and after its entry left the page and was read again", async () => {
    const page = await newCompanion();
    await expect.poll(() => page.locator(".chat-header .status").textContent(), { timeout: 20_000 }).toContain("idle");
    const { worker, interaction } = chatWorker(page);
    const runs = 101;
    for (let i = 1; i <= runs; i++) {
      fake.enqueue({ kind: "stream", chunks: replyChunks({ text: "cut short" }), end: "hang" });
      let runId = "";
      for await (const message of interaction.streamInput({ worker, input: { text: `stopped ${i}` }, busyPolicy: BusyPolicy.REJECT })) {
        runId ||= message.run?.runId ?? "";
        if (message.events.some((event) => event.kind.case === "textDelta")) break;
      }
      await interaction.cancelRun({ worker, runId });
    }
    // Per run: its question, then (once it is stopped) its mark.
    const pattern = async (): Promise<string> =>
      (await page.locator(".log > *").evaluateAll((elements) => elements.map((element) => element.className)))
        .map((name) => (name === "entry user" ? "Q" : name === "stopped" ? "S" : ""))
        .join("");
    await expect.poll(() => page.locator(".log .entry.user").last().textContent(), { timeout: 30_000 }).toBe(`stopped ${runs}`);
    await expect.poll(async () => (await pattern()).endsWith("QS"), { timeout: 20_000 }).toBe(true);

    // Followed live, the page kept its bound: the first run's entry and mark left it. Scrolled back to, both return.
    // The page holds 200 entries and marks (MAX_SHOWN in conversation.ts) while the reader pages back too, so the
    // newest runs left it meanwhile: the first runs are shown, from the first, each marked, but for the last one
    // shown when the window's edge cut it (its mark follows its last entry, below the edge, and comes back with it).
    const firstUser = () => page.locator(".log .entry.user").first().textContent();
    const everyShownMarked = /^(QS){50,}Q?$/;
    expect((await shownSeqs(page))[0]).toBeGreaterThan(1);
    await scrollToOldest(page);
    expect(await firstUser()).toBe("stopped 1");
    expect(await page.locator(".log > *").count()).toBeLessThanOrEqual(200);
    expect(await pattern()).toMatch(everyShownMarked);

    // Loaded afresh, the oldest run is past the newest 100 stopped ones, and still marked when scrolled to.
    await page.reload();
    await expect.poll(() => page.locator(".log .entry.user").last().textContent(), { timeout: 20_000 }).toBe(`stopped ${runs}`);
    await scrollToOldest(page);
    expect(await firstUser()).toBe("stopped 1");
    expect(await page.locator(".log > *").count()).toBeLessThanOrEqual(200);
    await expect.poll(pattern).toMatch(everyShownMarked);
    // 101 runs streamed and stopped through the browser, then two reads back to the start: 6 s on the idle 2-core VM,
    // past the default 60 s at load 12-15.
  }, 180_000);

  it("can be used from the keyboard and read by a screen reader: focus in the message box, committed entries in a log region", async () => {
    const page = await newCompanion();
    // Typing right after "New companion" goes into the message box.
    await expect
      .poll(() =>
        page.evaluate(
          () => (globalThis as unknown as { document: { activeElement: { className: string } } }).document.activeElement.className,
        ),
      )
      .toBe("input");
    const message = page.getByRole("textbox", { name: "Message" });
    expect(await message.count()).toBe(1);
    fake.enqueue(reply({ text: "Read out once, when it is complete.", pieceSize: 4 }, { delayMs: 10 }));
    await page.keyboard.type("Hello");
    await page.keyboard.press("Enter");
    const log = page.getByRole("log", { name: "Conversation" });
    await expect
      .poll(() => log.locator(".entry.assistant").textContent(), { timeout: 20_000 })
      .toContain("Read out once, when it is complete.");
    expect(await log.getAttribute("aria-live")).toBe("polite");
    // The streaming copy is outside the live region: it is re-rendered every frame and would be read out piece by piece.
    expect(await page.locator("[aria-live] .live, .live[aria-live]:not([aria-live=off])").count()).toBe(0);
    await expect(log.locator(".entry.user").textContent()).resolves.toBe("Hello");
  });
});

describe("a Backend with a token (as deployed on Kubernetes)", () => {
  it("asks for the token, refuses a wrong one, and then works with it, never putting it in the URL", async () => {
    const dir = mkdtempSync(join(tmpdir(), "console-token-"));
    const token = "console-test-token-1234";
    writeFileSync(join(dir, "token"), `${token}\n`, { mode: 0o600 });
    const guarded = await startConsole(
      ["--port", "0", "--grpc-port", "0", "--data-dir", join(dir, "data"), "--token-file", join(dir, "token")],
      {
        OPENAI_API_KEY: "test-key",
        OPENAI_BASE_URL: fake.baseURL,
      },
    );
    const page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
    try {
      await page.goto(guarded.url);
      const field = page.getByLabel("Access token");
      await expect.poll(() => field.isVisible(), { timeout: 20_000 }).toBe(true);
      await field.fill("not-the-token");
      await field.press("Enter");
      await expect.poll(() => page.locator(".sidebar .error").textContent(), { timeout: 20_000 }).toContain("token was refused");
      expect(await field.isVisible()).toBe(true);

      await field.fill(token);
      await page.getByRole("button", { name: "Use token" }).click();
      await expect.poll(() => page.locator(".health.ready").count(), { timeout: 20_000 }).toBe(1);
      expect(await field.isVisible()).toBe(false);
      await page.getByRole("button", { name: "New companion" }).click();
      await page.waitForURL(/#\/w\//, { timeout: 20_000 });
      fake.enqueue(reply({ text: "Streamed to a browser that sent its token.", pieceSize: 5 }, { delayMs: 10 }));
      await send(page, "Can you hear me?");
      await expect
        .poll(() => page.locator(".log .entry.assistant").textContent(), { timeout: 20_000 })
        .toContain("Streamed to a browser that sent its token.");

      // Kept for the tab (a reload needs no new entry), never in the address.
      await page.reload();
      await expect.poll(() => page.locator(".log .entry.user").textContent(), { timeout: 20_000 }).toBe("Can you hear me?");
      expect(await field.isVisible()).toBe(false);
      expect(page.url()).not.toContain(token);

      // A new tab has no token: its chat says so (not "Connection lost"), and loads once the token is given.
      const fresh = await browser.newPage({ viewport: { width: 1200, height: 800 } });
      pages.push(fresh);
      await fresh.goto(page.url());
      await expect.poll(() => fresh.locator(".chat .error").textContent(), { timeout: 20_000 }).toContain("access token");
      expect(await fresh.locator(".banner").isHidden()).toBe(true);
      await fresh.getByLabel("Access token").fill(token);
      await fresh.getByRole("button", { name: "Use token" }).click();
      await expect.poll(() => fresh.locator(".log .entry.user").textContent(), { timeout: 20_000 }).toBe("Can you hear me?");
      expect(await fresh.locator(".chat .error").isHidden()).toBe(true);
    } finally {
      await page.close();
      guarded.cli.kill();
      await guarded.cli.exited;
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("a run cut by a crash of the Backend", () => {
  it("is marked interrupted once the Backend is back, live and after a reload", async () => {
    const dir = mkdtempSync(join(tmpdir(), "console-crash-"));
    const env = { OPENAI_API_KEY: "test-key", OPENAI_BASE_URL: fake.baseURL };
    let crashing = await startConsole(["--port", "0", "--grpc-port", "0", "--data-dir", dir], env);
    const page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
    try {
      await page.goto(crashing.url);
      await page.getByRole("button", { name: "New companion" }).click();
      await page.waitForURL(/#\/w\//, { timeout: 20_000 });
      fake.enqueue({
        kind: "stream",
        chunks: replyChunks({ text: "An answer the crash will cut off.", pieceSize: 2 }),
        delayMs: 40,
        end: "hang",
      });
      await send(page, "Tell me, slowly");
      await expect.poll(async () => (await page.locator(".live .entry.assistant").textContent()) ?? "", { timeout: 20_000 }).toMatch(/An/);
      const [port, grpcPort] = [new URL(crashing.url).port, crashing.h2c.split(":").pop()!];
      crashing.cli.kill();
      await crashing.cli.exited;
      crashing = await startConsole(["--port", port, "--grpc-port", grpcPort, "--data-dir", dir], env);
      await expect.poll(() => page.locator(".banner").isHidden(), { timeout: 30_000 }).toBe(true);
      // Nothing of the answer was committed: without a mark the question would just stand there unanswered.
      await expect.poll(() => page.locator(".log .interrupted").count(), { timeout: 20_000 }).toBe(1);
      await expect(page.locator(".log .interrupted").textContent()).resolves.toContain("interrupted");
      // The runtime's run.interrupted notice is that mark, not a second line saying the same.
      await expect
        .poll(() => page.locator(".log .interrupted").textContent(), { timeout: 20_000 })
        .toMatch(/stopped before this run ended.*not kept/);
      expect(await page.locator(".log .entry.notice").count()).toBe(0);
      expect(await page.locator(".live .entry").count()).toBe(0);
      // No Stop for a run that is gone, and the box takes the next message.
      expect(await page.locator("button.stop").isHidden()).toBe(true);
      expect(await page.locator("textarea.input").isEnabled()).toBe(true);
      await page.reload();
      await expect.poll(() => page.locator(".log .entry.user").textContent(), { timeout: 20_000 }).toBe("Tell me, slowly");
      await expect.poll(() => page.locator(".log .interrupted").count()).toBe(1);
      expect(await page.locator(".log .interrupted").textContent()).toMatch(/stopped before this run ended/);
      expect(await page.locator(".log .stopped").count()).toBe(0);
    } finally {
      await page.close();
      crashing.cli.kill();
      await crashing.cli.exited;
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("a Backend restored from a backup while a chat is open", () => {
  it("shows the restored conversation and goes on working, instead of reconnecting forever to a cursor the data no longer has", async () => {
    const dir = mkdtempSync(join(tmpdir(), "console-restore-"));
    const backup = mkdtempSync(join(tmpdir(), "console-backup-"));
    const env = { OPENAI_API_KEY: "test-key", OPENAI_BASE_URL: fake.baseURL };
    let running = await startConsole(["--port", "0", "--grpc-port", "0", "--data-dir", dir], env);
    const [port, grpcPort] = [new URL(running.url).port, running.h2c.split(":").pop()!];
    const restart = async (): Promise<void> => {
      running = await startConsole(["--port", port, "--grpc-port", grpcPort, "--data-dir", dir], env);
    };
    const stop = async (): Promise<void> => {
      running.cli.kill();
      await running.cli.exited;
    };
    const page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
    try {
      await page.goto(running.url);
      await page.getByRole("button", { name: "New companion" }).click();
      await page.waitForURL(/#\/w\//, { timeout: 20_000 });
      fake.enqueue(reply({ text: "Kept in the backup.", pieceSize: 5 }));
      await send(page, "Before the backup");
      await expect.poll(() => page.locator(".log .entry.assistant").textContent(), { timeout: 20_000 }).toContain("Kept in the backup.");
      await stop();
      // A backup of the files (the dead process's lock socket is not one).
      cpSync(dir, backup, { recursive: true, filter: (source) => !source.endsWith(".sock") });
      await restart();
      await expect.poll(() => page.locator(".banner").isHidden(), { timeout: 30_000 }).toBe(true);
      fake.enqueue(reply({ text: "Lost with the restore.", pieceSize: 5 }));
      await send(page, "After the backup");
      await expect.poll(() => page.locator(".log .entry.assistant").count(), { timeout: 20_000 }).toBe(2);

      // The operator restores the backup: the page's cursor is now ahead of the worker's events.
      await stop();
      rmSync(dir, { recursive: true, force: true });
      cpSync(backup, dir, { recursive: true, filter: (source) => !source.endsWith(".sock") });
      await restart();
      await expect.poll(() => page.locator(".log .entry.user").allTextContents(), { timeout: 30_000 }).toEqual(["Before the backup"]);
      await expect.poll(() => page.locator(".banner").isHidden()).toBe(true);
      fake.enqueue(reply({ text: "Answered after the restore.", pieceSize: 5 }));
      await send(page, "After the restore");
      await expect
        .poll(async () => (await page.locator(".log .entry.assistant").allTextContents()).map((text) => text.trim()), { timeout: 20_000 })
        .toEqual(["Kept in the backup.", "Answered after the restore."]);
      expect(await page.locator(".log .entry.user").allTextContents()).toEqual(["Before the backup", "After the restore"]);
    } finally {
      await page.close();
      await stop();
      rmSync(dir, { recursive: true, force: true });
      rmSync(backup, { recursive: true, force: true });
    }
  });
});
