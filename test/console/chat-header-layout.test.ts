import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RuntimeRegistry } from "../../gen/worker_runtime/v1/runtime_registry_pb.js";
import { WorkerCatalog } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { type ConsoleWithBrowser, startConsoleWithBrowser } from "./console-process.js";

/**
 * The chat's header with a worker name longer than the window is wide, in
 * headless Chromium against `npm start`'s real Backend, measured by the
 * boxes Chromium laid out at a narrow viewport: a long name without spaces
 * ran out of the header (and widened the chat past the window, pushing the
 * status out of sight), where the sidebar cuts the same name with an
 * ellipsis.
 */

const LONG_NAME = "W".repeat(150);

let server: ConsoleWithBrowser;
let route: string;

beforeAll(async () => {
  server = await startConsoleWithBrowser({ dataDirPrefix: "console-header-layout-", provider: false });
  const transport = createGrpcTransport({ baseUrl: `http://${server.h2c}` });
  const { runtimes } = await createClient(RuntimeRegistry, transport).listRuntimes({});
  const runtimeId = runtimes.find((runtime) => runtime.embedded)!.runtimeId;
  const { worker } = await createClient(WorkerCatalog, transport).createWorker({
    runtimeId,
    displayName: LONG_NAME,
    profile: { source: { case: "builtin", value: "companion" } },
  });
  route = `#/w/${encodeURIComponent(worker!.ref!.runtimeId)}/${encodeURIComponent(worker!.ref!.workerId)}`;
});

afterAll(async () => {
  await server?.close();
});

/** What the page laid out for the chat's header (run in the page: a string, since tests have no DOM types). */
const HEADER_LAYOUT = `(() => {
  const header = document.querySelector(".chat-header");
  const title = header.querySelector("h2");
  const status = header.querySelector(".status");
  const range = document.createRange();
  range.selectNodeContents(title);
  return {
    headerOverflows: header.scrollWidth > header.clientWidth,
    headerRight: header.getBoundingClientRect().right,
    statusRight: status.getBoundingClientRect().right,
    statusWidth: status.getBoundingClientRect().width,
    windowWidth: window.innerWidth,
    pageOverflows: document.documentElement.scrollWidth > window.innerWidth,
    lines: new Set([...range.getClientRects()].map((r) => Math.round(r.top))).size,
    textOverflow: getComputedStyle(title).textOverflow,
    title: title.getAttribute("title"),
  };
})()`;

describe("the chat's header", () => {
  it("cuts a long worker name with an ellipsis at a narrow viewport, keeping the status in view and the full name as its title", async () => {
    const page = await server.browser.newPage({ viewport: { width: 640, height: 600 } });
    await page.goto(`${server.url}${route}`);
    await expect.poll(() => page.locator(".chat-header .status").textContent(), { timeout: 20_000 }).toBe("idle");
    await expect.poll(() => page.locator(".chat-header h2").textContent(), { timeout: 20_000 }).toBe(LONG_NAME);
    const layout = await page.evaluate<{
      headerOverflows: boolean;
      headerRight: number;
      statusRight: number;
      statusWidth: number;
      windowWidth: number;
      pageOverflows: boolean;
      lines: number;
      textOverflow: string;
      title: string | null;
    }>(HEADER_LAYOUT);
    expect(layout.headerOverflows, JSON.stringify(layout)).toBe(false);
    expect(layout.pageOverflows, JSON.stringify(layout)).toBe(false);
    expect(layout.headerRight).toBeLessThanOrEqual(layout.windowWidth);
    // The status ("idle") is still there to read, inside the header.
    expect(layout.statusWidth).toBeGreaterThan(0);
    expect(layout.statusRight).toBeLessThanOrEqual(layout.headerRight);
    expect(layout.lines).toBe(1);
    expect({ textOverflow: layout.textOverflow, title: layout.title }).toEqual({ textOverflow: "ellipsis", title: LONG_NAME });
    // Its accessible name is the whole name, not what is left in view.
    await expect(page.getByRole("heading", { level: 2, name: LONG_NAME }).count()).resolves.toBe(1);
  }, 60_000);
});
