import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { launchChromium } from "../support/chromium.js";
import { type FakeOpenAI, startFakeOpenAI } from "../support/fake-openai.js";
import { reply } from "../support/openai-chunks.js";
import { buildConsole, startConsole } from "./console-process.js";

/**
 * What a chat says of a Backend that went away and came back, in headless
 * Chromium against `npm start`'s entry, stopped and started again on the
 * same data dir and ports, and the fake provider.
 */

vi.setConfig({ expect: { poll: { timeout: 20_000 } } });

let browser: Browser;
let fake: FakeOpenAI;

beforeAll(async () => {
  await buildConsole();
  fake = await startFakeOpenAI();
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
  await fake?.close();
});

/** The chat's error line ("" while there is none), read at once. */
const ERROR_TEXT = `document.querySelector(".chat .error:not([hidden])")?.textContent ?? ""`;

describe("a Backend restarted while a chat is open", () => {
  it("takes back 'Cannot reach the console's server' once the chat reaches it again", async () => {
    const dir = mkdtempSync(join(tmpdir(), "console-restart-"));
    const env = { OPENAI_API_KEY: "test-key", OPENAI_BASE_URL: fake.baseURL };
    let running = await startConsole(["--port", "0", "--grpc-port", "0", "--data-dir", dir], env);
    const page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
    try {
      await page.goto(running.url);
      await page.getByRole("button", { name: "New companion" }).click();
      await page.waitForURL(/#\/w\//, { timeout: 20_000 });
      await expect.poll(() => page.locator(".chat-header .status").textContent()).toBe("idle");
      const [port, grpcPort] = [new URL(running.url).port, running.h2c.split(":").pop()!];
      running.cli.kill();
      await running.cli.exited;
      await expect.poll(() => page.locator(".banner").isVisible(), { message: "the banner while the Backend is away" }).toBe(true);

      // A message sent meanwhile fails, said so, and stays in the box.
      await page.locator("textarea.input").fill("Are you there?");
      await page.keyboard.press("Enter");
      await expect.poll(() => page.evaluate<string>(ERROR_TEXT)).toBe("Cannot reach the console's server. Is npm start still running?");
      expect(await page.locator("textarea.input").inputValue()).toBe("Are you there?");

      running = await startConsole(["--port", port, "--grpc-port", grpcPort, "--data-dir", dir], env);
      await expect.poll(() => page.locator(".banner").isHidden(), { timeout: 30_000, message: "the chat reconnected" }).toBe(true);
      // The server is reached again: saying it cannot be would send the reader to restart what runs.
      await expect.poll(() => page.evaluate<string>(ERROR_TEXT), { message: "the stale error gone" }).toBe("");
      expect(await page.locator("textarea.input").inputValue()).toBe("Are you there?");
      fake.enqueue(reply({ text: "Here I am." }));
      await page.keyboard.press("Enter");
      await expect.poll(() => page.locator(".log .entry.assistant").textContent()).toContain("Here I am.");
    } finally {
      await page.close();
      running.cli.kill();
      await running.cli.exited;
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
