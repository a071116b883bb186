import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RuntimeRegistry } from "../../gen/worker_runtime/v1/runtime_registry_pb.js";
import { WorkerCatalog } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { type ConsoleWithBrowser, startConsoleWithBrowser } from "./console-process.js";

/**
 * The console in a phone-sized window (380 × 700), in headless Chromium
 * against `npm start`'s real Backend, measured by the boxes Chromium laid
 * out: the sidebar kept its 280 px column and left the chat 100 px, where
 * a refusal stood one word a line and the message box was a sliver.
 */

let server: ConsoleWithBrowser;
let route: string;

beforeAll(async () => {
  server = await startConsoleWithBrowser({ dataDirPrefix: "console-narrow-", provider: false });
  const transport = createGrpcTransport({ baseUrl: `http://${server.h2c}` });
  const { runtimes } = await createClient(RuntimeRegistry, transport).listRuntimes({});
  const { worker } = await createClient(WorkerCatalog, transport).createWorker({
    runtimeId: runtimes.find((runtime) => runtime.embedded)!.runtimeId,
    displayName: "Narrow",
    profile: { source: { case: "builtin", value: "companion" } },
  });
  route = `#/w/${encodeURIComponent(worker!.ref!.runtimeId)}/${encodeURIComponent(worker!.ref!.workerId)}`;
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

/** What the page laid out (run in the page: a string, since tests have no DOM types). */
const LAYOUT = `(() => {
  const box = (selector) => {
    const r = document.querySelector(selector).getBoundingClientRect();
    return { left: r.left, right: r.right, top: r.top, bottom: r.bottom };
  };
  return {
    chat: box(".chat"),
    scroller: box(".scroller"),
    input: box("textarea.input"),
    send: box("button.send"),
    newCompanion: box("button.new-companion"),
    worker: box(".sidebar .worker a"),
    width: window.innerWidth,
    height: window.innerHeight,
    pageOverflows: document.documentElement.scrollWidth > window.innerWidth,
  };
})()`;

interface Layout {
  chat: Box;
  scroller: Box;
  input: Box;
  send: Box;
  newCompanion: Box;
  worker: Box;
  width: number;
  height: number;
  pageOverflows: boolean;
}

function inWindow(box: Box, layout: Layout): boolean {
  return box.left >= 0 && box.top >= 0 && box.right <= layout.width && box.bottom <= layout.height;
}

describe("a narrow window", () => {
  it("gives the chat the window's width, with the sidebar above it, everything in view", async () => {
    const page = await server.browser.newPage({ viewport: { width: 380, height: 700 } });
    try {
      await page.goto(`${server.url}${route}`);
      await expect.poll(() => page.locator(".chat-header .status").textContent(), { timeout: 20_000 }).toBe("idle");
      await expect.poll(() => page.locator(".sidebar .worker a").count(), { timeout: 20_000 }).toBe(1);
      const layout = await page.evaluate<Layout>(LAYOUT);
      const shown = JSON.stringify(layout);
      expect(layout.pageOverflows, shown).toBe(false);
      // The chat spans the window, below the sidebar.
      expect(layout.chat.left, shown).toBe(0);
      expect(layout.chat.right, shown).toBe(layout.width);
      expect(layout.chat.top, shown).toBeGreaterThanOrEqual(layout.newCompanion.bottom);
      // The sidebar's controls, the message box and Send are all in the window; the conversation has room to read.
      for (const [name, box] of Object.entries({
        newCompanion: layout.newCompanion,
        worker: layout.worker,
        input: layout.input,
        send: layout.send,
      })) {
        expect(inWindow(box, layout), `${name} in the window: ${shown}`).toBe(true);
      }
      expect(layout.input.right - layout.input.left, shown).toBeGreaterThan(200);
      expect(layout.scroller.bottom - layout.scroller.top, shown).toBeGreaterThan(250);
    } finally {
      await page.close();
    }
  }, 60_000);
});
