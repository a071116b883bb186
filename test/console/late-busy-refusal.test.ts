import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { reply } from "../support/openai-chunks.js";
import { type ConsoleWithProvider, startConsoleWithBrowser } from "./console-process.js";

/**
 * A busy refusal (WORKER_BUSY) whose answer reaches the page only after the
 * run it was about has ended: the chat cleared such a refusal when the run
 * ended, but one arriving after that stood under an idle header, telling the
 * reader to wait for an answer that was already there, until the next send.
 * Headless Chromium against `npm start`'s real Backend and the fake
 * provider; the refusal is the Backend's own, only held on its way to the
 * page (Chromium's request routing) until the run has ended.
 */

let server: ConsoleWithProvider;
let page: Page | undefined;

beforeAll(async () => {
  server = await startConsoleWithBrowser({ dataDirPrefix: "console-late-busy-" });
});

// Closing Chromium closes the page.
afterAll(async () => {
  await server?.close();
});

describe("a busy refusal that arrives after the run ended", () => {
  it("is not left on screen once no run is in progress", async () => {
    page = await server.browser.newPage({ viewport: { width: 1200, height: 800 } });
    await page.goto(server.url);
    await page.getByRole("button", { name: "New companion" }).click();
    await page.waitForURL(/#\/w\//);
    const status = page.locator(".chat-header .status");
    await expect.poll(() => status.textContent(), { timeout: 20_000 }).toBe("idle");

    // The first answer holds mid-stream until the test lets it go on.
    let releaseAnswer!: () => void;
    const answerHeld = new Promise<void>((resolve) => {
      releaseAnswer = resolve;
    });
    server.fake.enqueue(reply({ text: "An answer held in the middle of its stream.", pieceSize: 6 }, { waitBefore: { 3: answerHeld } }));
    await page.locator("textarea.input").fill("first");
    await page.keyboard.press("Enter");
    await expect.poll(() => status.textContent(), { timeout: 20_000 }).toBe("running");

    // The second message's answer (the Backend's refusal) is held on its way to the page.
    let releaseRefusal!: () => void;
    const refusalHeld = new Promise<void>((resolve) => {
      releaseRefusal = resolve;
    });
    let refusedStatus: number | undefined;
    await page.route("**/worker_runtime.v1.WorkerInteraction/SendInput", async (route) => {
      const response = await route.fetch();
      refusedStatus = response.status();
      await refusalHeld;
      await route.fulfill({ response });
    });
    await page.locator("textarea.input").fill("second");
    await page.keyboard.press("Enter");
    await expect.poll(() => refusedStatus, { timeout: 20_000 }).toBeDefined();
    expect(refusedStatus).not.toBe(200);

    // The run ends; only then does the refusal reach the page.
    releaseAnswer();
    await expect.poll(() => page!.locator(".log .entry.assistant").count(), { timeout: 20_000 }).toBe(1);
    await expect.poll(() => status.textContent(), { timeout: 20_000 }).toBe("idle");
    releaseRefusal();
    // Send opens again once the refusal has been handled: the message was refused, so it stays in the box.
    await expect.poll(() => page!.getByRole("button", { name: "Send" }).isEnabled(), { timeout: 20_000 }).toBe(true);
    expect(await page.locator("textarea.input").inputValue()).toBe("second");
    // A frame for anything the chat did after handling it.
    await page.evaluate("new Promise((resolve) => requestAnimationFrame(resolve))");
    expect(await page.locator(".chat .error").isHidden(), (await page.locator(".chat .error").textContent()) ?? "").toBe(true);
  }, 120_000);
});
