import { fromBinary } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RuntimeRegistry } from "../../gen/worker_runtime/v1/runtime_registry_pb.js";
import { ListWorkersRequestSchema, WorkerCatalog } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { type ConsoleWithBrowser, startConsoleWithBrowser } from "./console-process.js";

/**
 * The sidebar with more workers than one page, against `npm start`'s real
 * Backend in headless Chromium: every worker is reachable by scrolling, and
 * the 3 s poll asks only for the pages shown.
 */

const WORKERS = 230;

let browser: Browser;
let server: ConsoleWithBrowser;
let page: Page | undefined;

beforeAll(async () => {
  server = await startConsoleWithBrowser({ dataDirPrefix: "console-list-", provider: false });
  browser = server.browser;
  const transport = createGrpcTransport({ baseUrl: `http://${server.h2c}` });
  const { runtimes } = await createClient(RuntimeRegistry, transport).listRuntimes({});
  const runtimeId = runtimes.find((runtime) => runtime.embedded)!.runtimeId;
  const catalog = createClient(WorkerCatalog, transport);
  for (let i = 0; i < WORKERS; i += 10) {
    await Promise.all(
      Array.from({ length: 10 }, (_, j) =>
        catalog.createWorker({
          runtimeId,
          displayName: `Worker ${String(i + j).padStart(3, "0")}`,
          profile: { source: { case: "builtin", value: "companion" } },
        }),
      ),
    );
  }
});

// Closing Chromium closes the page.
afterAll(async () => {
  await server?.close();
});

describe("the sidebar's worker list", () => {
  it("lists all of more than 100 workers as the list is scrolled to its end, polling only the pages shown", async () => {
    page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
    const pageSizes: number[] = [];
    page.on("request", (request) => {
      if (!request.url().endsWith("/worker_runtime.v1.WorkerCatalog/ListWorkers")) return;
      // Connect binary, unary: the body is the request message itself.
      pageSizes.push(fromBinary(ListWorkersRequestSchema, request.postDataBuffer() ?? new Uint8Array()).pageSize);
    });
    await page.goto(server.url);
    const listed = page.locator(".sidebar .worker");
    await expect.poll(() => listed.count(), { timeout: 20_000 }).toBe(100);
    // Not scrolled: the polls ask for the first page only.
    await expect.poll(() => pageSizes.length, { timeout: 20_000 }).toBeGreaterThanOrEqual(2);
    expect(new Set(pageSizes)).toEqual(new Set([100]));
    expect(await listed.count()).toBe(100);

    // Scrolled to the end, page after page, until the Backend has no more.
    for (const expected of [200, WORKERS]) {
      await page.locator(".sidebar").evaluate((sidebar) => sidebar.scrollTo(0, sidebar.scrollHeight));
      await expect.poll(() => listed.count(), { timeout: 20_000 }).toBe(expected);
    }
    expect(await page.locator(".sidebar .more-workers").count()).toBe(0);
    const names = await page.locator(".sidebar .worker a").allTextContents();
    expect(new Set(names).size).toBe(WORKERS);
    expect(names).toContain(`Worker ${WORKERS - 1}`);

    // The poll now refreshes what is shown, in one call, and keeps it all.
    const before = pageSizes.length;
    await expect.poll(() => pageSizes.length, { timeout: 20_000 }).toBeGreaterThan(before);
    expect(pageSizes.at(-1)).toBe(300);
    expect(await listed.count()).toBe(WORKERS);
  });
});
