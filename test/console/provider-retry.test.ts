import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { errorReply, reply } from "../support/openai-chunks.js";
import { type ConsoleWithProvider, startConsoleWithBrowser } from "./console-process.js";

/**
 * A model provider failing transiently while the chat is open, in headless
 * Chromium against `npm start`'s entry and the fake provider: the runtime
 * retries (within the run's budget, 60 s by default) and tells watchers
 * with `retry_scheduled`, but the chat showed only "running" and an empty
 * reply all the while, as if the model were thinking.
 */

vi.setConfig({ expect: { poll: { timeout: 20_000 } } });

let server: ConsoleWithProvider;

/** The retry note's text ("" while there is none): read at once, so a poll sees it come and go. */
function noteText(page: Page): Promise<string> {
  return page.evaluate<string>(`document.querySelector(".chat .retrying:not([hidden])")?.textContent ?? ""`);
}

beforeAll(async () => {
  server = await startConsoleWithBrowser({ dataDirPrefix: "console-retry-" });
});

afterAll(async () => {
  await server?.close();
});

/** A page on a new companion's chat, once the worker is idle. */
async function newCompanionChat(): Promise<Page> {
  const page = await server.browser.newPage({ viewport: { width: 1200, height: 800 } });
  await page.goto(server.url);
  await page.getByRole("button", { name: "New companion" }).click();
  await page.waitForURL(/#\/w\//, { timeout: 20_000 });
  await expect.poll(() => page.locator(".chat-header .status").textContent()).toBe("idle");
  return page;
}

describe("a provider failing transiently", () => {
  it("says the model request failed and will be retried, until the answer comes", async () => {
    const page = await newCompanionChat();
    try {
      // Two failures, the first asking for 3 s (Retry-After), so the note is there to be seen; then the answer.
      server.fake.enqueue(
        errorReply(503, "overloaded", { "retry-after": "3" }),
        errorReply(500, "upstream exploded", { "retry-after": "2" }),
        reply({ text: "Answered at last." }),
      );
      await page.locator("textarea.input").fill("Hello?");
      await page.keyboard.press("Enter");
      await expect
        .poll(() => noteText(page), { message: "the first failure said" })
        .toMatch(/^The model provider failed \(provider returned HTTP 503: overloaded\)\. Retry 1 in [23] s…$/);
      expect(await page.locator(".chat .retrying").getAttribute("role")).toBe("status");
      await expect
        .poll(() => noteText(page), { message: "the second failure said" })
        .toMatch(/^The model provider failed \(provider returned HTTP 500: upstream exploded\)\. Retry 2 in [12] s…$/);
      await expect.poll(() => page.locator(".log .entry.assistant").textContent()).toContain("Answered at last.");
      // The answer came: the note leaves with the failure it was about.
      expect(await noteText(page)).toBe("");
    } finally {
      await page.close();
    }
  }, 60_000);

  it("takes the note away when the run ends without an answer", async () => {
    const page = await newCompanionChat();
    try {
      server.fake.enqueue(errorReply(503, "overloaded", { "retry-after": "10" }));
      await page.locator("textarea.input").fill("Hello again?");
      await page.keyboard.press("Enter");
      await expect.poll(() => noteText(page)).toMatch(/^The model provider failed \(provider returned HTTP 503: overloaded\)\. Retry 1 in/);
      await page.getByRole("button", { name: "Stop" }).click();
      await expect.poll(() => page.locator(".log .stopped").count()).toBe(1);
      await expect.poll(() => noteText(page)).toBe("");
    } finally {
      await page.close();
    }
  }, 60_000);
});
