import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { FakeOpenAI } from "../support/fake-openai.js";
import { reply } from "../support/openai-chunks.js";
import { type ConsoleWithProvider, startConsoleWithBrowser } from "./console-process.js";

/**
 * The sidebar entry of the open chat's worker says what the chat's header
 * says, as it changes: the sidebar polls every 3 s, so it used to read
 * "idle" beside a header saying "running", then "running" after the reply
 * had ended.
 */

/** Records, at every change of the header's status, what the selected sidebar entry says. */
const STATUS_RECORDER = `
  window.__statuses = [];
  new MutationObserver(() => {
    const header = document.querySelector(".chat-header .status");
    const side = document.querySelector(".sidebar .worker.selected .worker-status");
    if (!header || !side || !header.textContent) return;
    const last = window.__statuses[window.__statuses.length - 1];
    if (last && last.header === header.textContent) return;
    window.__statuses.push({ header: header.textContent, sidebar: side.textContent });
  }).observe(document, { subtree: true, childList: true, characterData: true });
`;

let browser: Browser;
let fake: FakeOpenAI;
let server: ConsoleWithProvider;
let page: Page | undefined;

beforeAll(async () => {
  server = await startConsoleWithBrowser({ dataDirPrefix: "console-sidebar-" });
  ({ browser, fake } = server);
});

// Closing Chromium closes the page.
afterAll(async () => {
  await server?.close();
});

describe("the sidebar beside an open chat", () => {
  it("says what the chat's header says at every change of the worker's status", async () => {
    page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
    await page.addInitScript(STATUS_RECORDER);
    await page.goto(server.url);
    await page.getByRole("button", { name: "New companion" }).click();
    await page.waitForURL(/#\/w\//, { timeout: 20_000 });
    await expect.poll(() => page!.locator(".sidebar .worker.selected .worker-status").textContent(), { timeout: 20_000 }).toBe("idle");

    for (const message of ["first", "second"]) {
      fake.enqueue(reply({ text: "A reply that streams for a little while.", pieceSize: 4 }, { delayMs: 60 }));
      await page.locator("textarea.input").fill(message);
      await page.keyboard.press("Enter");
      await expect.poll(() => page!.locator(".log .entry.assistant").count(), { timeout: 20_000 }).toBe(message === "first" ? 1 : 2);
      await expect.poll(() => page!.locator(".chat-header .status").textContent(), { timeout: 20_000 }).toBe("idle");
    }

    const statuses = await page.evaluate(() => (globalThis as unknown as { __statuses: { header: string; sidebar: string }[] }).__statuses);
    // Both runs went through "running" and back.
    expect(statuses.filter((status) => status.header === "running").length).toBe(2);
    for (const status of statuses) expect(status.sidebar, JSON.stringify(statuses)).toBe(status.header);
  });
});
