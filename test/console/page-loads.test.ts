import { createServer, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launchChromium } from "../support/chromium.js";
import { PAGE_LOAD_TIMEOUT_MS } from "../support/page-loads.js";

/**
 * The console tests' page loads (test/support/page-loads.ts): a page that
 * never loads fails within the bound, not Playwright's 30 s, and says which
 * page did not load. Against a real HTTP server that answers "/" once and
 * then never answers, and real headless Chromium.
 */

let browser: Browser;
let base: string;
const server = createServer((request, response) => {
  if (request.url === "/" && !answered) {
    answered = true;
    response.end("<!doctype html><title>once</title><p>once</p>");
    return;
  }
  hanging.push(response);
});
let answered = false;
const hanging: ServerResponse[] = [];

beforeAll(async () => {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
  for (const response of hanging) response.destroy();
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

describe("a console test's page load", () => {
  it("that hangs on reload fails within the bound, naming the page reloaded", async () => {
    const page = await browser.newPage();
    try {
      await page.goto(`${base}/`);
      const started = performance.now();
      const failure = await page.reload().then(
        () => undefined,
        (error: unknown) => error,
      );
      const took = performance.now() - started;
      expect(String(failure)).toContain(`the page ${base}/ (reloaded) did not load within ${PAGE_LOAD_TIMEOUT_MS} ms (waiting for "load")`);
      expect(took).toBeGreaterThanOrEqual(PAGE_LOAD_TIMEOUT_MS - 500);
      expect(took).toBeLessThan(PAGE_LOAD_TIMEOUT_MS + 10_000);
    } finally {
      await page.close();
    }
  }, 60_000);

  it("that hangs in a context of its own fails within the test's own timeout, naming the page", async () => {
    const context = await browser.newContext();
    try {
      const page = await context.newPage();
      await expect(page.goto(`${base}/never`, { timeout: 1_000, waitUntil: "domcontentloaded" })).rejects.toThrow(
        `the page ${base}/never did not load within 1000 ms (waiting for "domcontentloaded")`,
      );
    } finally {
      await context.close();
    }
  }, 60_000);
});
