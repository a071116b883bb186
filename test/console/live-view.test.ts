import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type FakeOpenAI, startFakeOpenAI } from "../support/fake-openai.js";
import { reply, replyChunks } from "../support/openai-chunks.js";
import { buildConsole, type ConsoleProcess, startConsole } from "./console-process.js";

/**
 * The chat's live view in real headless Chromium against `npm start`'s entry
 * and the fake provider: what model output may put on the page, and what is
 * left on it when a run ends. (The main walk-through is console.test.ts.)
 */
const CHROMIUM = process.env["CHROMIUM_PATH"] ?? "/usr/bin/chromium";
const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];

let browser: Browser;
let fake: FakeOpenAI;
let server: ConsoleProcess;
let dataDir: string;
const pages: Page[] = [];

beforeAll(async () => {
  await buildConsole();
  fake = await startFakeOpenAI();
  dataDir = mkdtempSync(join(tmpdir(), "console-live-"));
  server = await startConsole(["--port", "0", "--grpc-port", "0", "--data-dir", dataDir], {
    OPENAI_API_KEY: "test-key",
    OPENAI_BASE_URL: fake.baseURL,
  });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
});

afterAll(async () => {
  await browser?.close();
  server?.cli.kill();
  await server?.cli.exited;
  await fake?.close();
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

/** A new page on a new companion's chat. */
async function newCompanion(): Promise<Page> {
  const page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
  pages.push(page);
  await page.goto(server.url);
  await page.getByRole("button", { name: "New companion" }).click();
  await page.waitForURL(/#\/w\//);
  return page;
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
});
