import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RuntimeRegistry } from "../../gen/worker_runtime/v1/runtime_registry_pb.js";
import { WorkerCatalog } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { type ConsoleWithBrowser, startConsoleWithBrowser } from "./console-process.js";

/**
 * The sidebar's worker entries with names the layout did not expect, in
 * headless Chromium against `npm start`'s real Backend, measured by the
 * element boxes Chromium laid out: a long name without spaces ran out of the
 * sidebar over the chat, and an unnamed worker's id (its name there) broke
 * after "w-".
 */

const LONG_NAME = "é".repeat(100);

let server: ConsoleWithBrowser;
let page: Page | undefined;
let unnamedId: string;
let longRoute: string;

beforeAll(async () => {
  server = await startConsoleWithBrowser({ dataDirPrefix: "console-sidebar-layout-", provider: false });
  const transport = createGrpcTransport({ baseUrl: `http://${server.h2c}` });
  const { runtimes } = await createClient(RuntimeRegistry, transport).listRuntimes({});
  const runtimeId = runtimes.find((runtime) => runtime.embedded)!.runtimeId;
  const catalog = createClient(WorkerCatalog, transport);
  const companion = { source: { case: "builtin" as const, value: "companion" } };
  const long = (await catalog.createWorker({ runtimeId, displayName: LONG_NAME, profile: companion })).worker!.ref!;
  unnamedId = (await catalog.createWorker({ runtimeId, profile: companion })).worker!.ref!.workerId;
  longRoute = `#/w/${encodeURIComponent(long.runtimeId)}/${encodeURIComponent(long.workerId)}`;
});

afterAll(async () => {
  await server?.close();
});

interface Box {
  left: number;
  right: number;
  top: number;
  bottom: number;
}

/**
 * What the page laid out for a worker's entry in the sidebar, found by the
 * text of its link (run in the page: a string, since tests have no DOM types).
 */
const LAYOUT_OF = `(name) => {
  const box = (element) => {
    const r = element.getBoundingClientRect();
    return { left: r.left, right: r.right, top: r.top, bottom: r.bottom };
  };
  const link = [...document.querySelectorAll(".sidebar .worker a")].find((a) => a.textContent === name);
  const sidebar = document.querySelector(".sidebar");
  const chat = document.querySelector(".chat");
  if (!link || !sidebar || !chat) throw new Error("not laid out: " + name);
  // The lines the link's text was broken into.
  const range = document.createRange();
  range.selectNodeContents(link);
  const tops = new Set([...range.getClientRects()].map((r) => Math.round(r.top)));
  return {
    link: box(link),
    sidebar: box(sidebar),
    chat: box(chat),
    lines: tops.size,
    sidebarScrolls: sidebar.scrollWidth > sidebar.clientWidth,
    textOverflow: getComputedStyle(link).textOverflow,
    title: link.getAttribute("title"),
  };
}`;

interface Layout {
  link: Box;
  sidebar: Box;
  chat: Box;
  lines: number;
  sidebarScrolls: boolean;
  textOverflow: string;
  title: string | null;
}

function layoutOf(text: string): Promise<Layout> {
  return page!.evaluate<Layout>(`(${LAYOUT_OF})(${JSON.stringify(text)})`);
}

describe("the sidebar's worker entries", () => {
  it("keeps a long name without spaces inside the sidebar, on one line, clear of the chat", async () => {
    page = await server.browser.newPage({ viewport: { width: 1200, height: 800 } });
    await page.goto(`${server.url}${longRoute}`);
    await expect.poll(() => page!.locator(".sidebar .worker a", { hasText: LONG_NAME }).count(), { timeout: 20_000 }).toBe(1);
    await expect.poll(() => page!.locator(".chat-header .status").textContent(), { timeout: 20_000 }).not.toBe("");
    const { link, sidebar, chat, lines, sidebarScrolls, textOverflow, title } = await layoutOf(LONG_NAME);
    expect(link.right).toBeLessThanOrEqual(sidebar.right);
    expect(link.right).toBeLessThanOrEqual(chat.left);
    expect(lines).toBe(1);
    expect(sidebarScrolls).toBe(false);
    // Cut with an ellipsis, the whole name is still there to read (its title).
    expect({ textOverflow, title }).toEqual({ textOverflow: "ellipsis", title: LONG_NAME });
  });

  it("shows an unnamed worker's id on one line, not broken after 'w-'", async () => {
    expect(unnamedId).toMatch(/^w-/);
    await expect.poll(() => page!.locator(".sidebar .worker a", { hasText: unnamedId }).count(), { timeout: 20_000 }).toBe(1);
    const { link, sidebar, lines } = await layoutOf(unnamedId);
    expect(lines).toBe(1);
    expect(link.right).toBeLessThanOrEqual(sidebar.right);
  });
});
