import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launchChromium } from "../support/chromium.js";
import { type FakeOpenAI, startFakeOpenAI } from "../support/fake-openai.js";
import { reply } from "../support/openai-chunks.js";
import { selfSignedCertificate } from "../support/self-signed.js";
import { buildConsole, type ConsoleProcess, startConsole } from "./console-process.js";

/**
 * `npm start -- --tls-cert … --tls-key …` in real headless Chromium: the
 * console and its API reach the browser over HTTP/2, one connection for every
 * tab, so more than six visible tabs each keep a live watch (over HTTP/1.1 a
 * browser opens six connections per host and each watch holds one).
 */

const TABS = 8;

let browser: Browser;
let fake: FakeOpenAI;
let server: ConsoleProcess;
let dir: string;

beforeAll(async () => {
  await buildConsole();
  fake = await startFakeOpenAI();
  dir = mkdtempSync(join(tmpdir(), "console-tls-"));
  await selfSignedCertificate(dir);
  server = await startConsole(
    [
      "--port",
      "0",
      "--grpc-port",
      "0",
      "--data-dir",
      join(dir, "data"),
      "--tls-cert",
      join(dir, "cert.pem"),
      "--tls-key",
      join(dir, "key.pem"),
    ],
    { OPENAI_API_KEY: "test-key", OPENAI_BASE_URL: fake.baseURL },
  );
  // The certificate is the test's own: no CA the browser knows signed it.
  browser = await launchChromium(["--ignore-certificate-errors"]);
});

afterAll(async () => {
  await browser?.close();
  server?.cli.kill();
  await server?.cli.exited;
  await fake?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** The protocols the page and every request it made were fetched over (PerformanceResourceTiming.nextHopProtocol). */
function protocolsOf(page: Page): Promise<string[]> {
  return page.evaluate(`[...performance.getEntriesByType("navigation"), ...performance.getEntriesByType("resource")].map(
    (entry) => entry.nextHopProtocol,
  )`);
}

async function send(page: Page, text: string): Promise<void> {
  await page.locator("textarea.input").fill(text);
  await page.keyboard.press("Enter");
}

describe("the console over TLS", () => {
  it("is printed as an https URL and loaded over HTTP/2, page, bundle and API alike", async () => {
    expect(server.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/$/);
    const page = await browser.newPage();
    try {
      await page.goto(server.url);
      await expect.poll(() => page.locator(".health.ready").count(), { timeout: 20_000 }).toBe(1);
      const protocols = await protocolsOf(page);
      // The page, app.js, style.css and at least one RPC.
      expect(protocols.length).toBeGreaterThanOrEqual(4);
      expect(new Set(protocols)).toEqual(new Set(["h2"]));
    } finally {
      await page.close();
    }
  });

  it(`keeps a live chat in each of ${TABS} visible tabs (past HTTP/1.1's six connections per host)`, async () => {
    // One browser context: its tabs share one connection pool, as a user's windows do (headless tabs are never hidden).
    const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
    try {
      const tabs: Page[] = [];
      for (let i = 0; i < TABS; i++) {
        const tab = await context.newPage();
        await tab.goto(server.url, { timeout: 20_000 });
        await tab.getByRole("button", { name: "New companion" }).click();
        await tab.waitForURL(/#\/w\//, { timeout: 20_000 });
        await expect.poll(() => tab.locator(".chat-header .status").textContent(), { timeout: 20_000 }).toContain("idle");
        tabs.push(tab);
      }
      expect(await tabs[0]!.evaluate("document.visibilityState")).toBe("visible");
      // Every tab's watch is live: each one streams its own reply.
      for (const [i, tab] of tabs.entries()) {
        fake.enqueue(reply({ text: `Tab ${i + 1} is answered.`, pieceSize: 5 }, { delayMs: 5 }));
        await send(tab, `Tab ${i + 1} here`);
        await expect
          .poll(() => tab.locator(".log .entry.assistant").textContent(), { timeout: 20_000 })
          .toContain(`Tab ${i + 1} is answered.`);
      }
      expect(new Set((await Promise.all(tabs.map(protocolsOf))).flat())).toEqual(new Set(["h2"]));
    } finally {
      await context.close();
    }
  });
});
