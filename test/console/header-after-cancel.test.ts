import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RuntimeRegistry } from "../../gen/worker_runtime/v1/runtime_registry_pb.js";
import { WorkerCatalog } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { launchChromium } from "../support/chromium.js";
import { type FakeOpenAI, startFakeOpenAI } from "../support/fake-openai.js";
import { reply } from "../support/openai-chunks.js";
import { buildConsole, type ConsoleProcess, startConsole, carefulWorkspace } from "./console-process.js";

/**
 * The chat's header once the reader stops (Stop) a run that waits for
 * their approval: the run's CANCELLED reaches the chat before the worker's
 * own change (IDLE), and the header, left without an active run, fell back
 * on the worker it had, whose active_run_state still said
 * AWAITING_APPROVAL: "waiting for approval" for a run that had ended, until
 * the worker's update came. The console in real headless Chromium against
 * `npm start`'s entry (Backend, embedded runtime, file store) and the fake
 * provider, which asks for a tool call the profile makes wait for approval.
 * The open worker's sidebar entry, which says what the header says, is
 * held to the same.
 */

/**
 * Records every change of the header's words together with whether the
 * Stop button is hidden: the chat hides it, in the same task as it tells
 * the header, when it learns the active run ended.
 */
const HEADER_RECORDER = `
  window.__headers = [];
  new MutationObserver(() => {
    const header = document.querySelector(".chat-header .status");
    const stop = document.querySelector("button.stop");
    const side = document.querySelector(".sidebar .worker.selected .worker-status");
    if (!header || !stop || !side || !header.textContent) return;
    const seen = { header: header.textContent, sidebar: side.textContent, runEnded: stop.hidden };
    const last = window.__headers[window.__headers.length - 1];
    if (last && last.header === seen.header && last.sidebar === seen.sidebar && last.runEnded === seen.runEnded) return;
    window.__headers.push(seen);
  }).observe(document, { subtree: true, childList: true, characterData: true, attributes: true });
`;

interface SeenHeader {
  header: string;
  /** The open worker's sidebar entry, which says what the header says (sidebar-follows-chat.test.ts). */
  sidebar: string;
  runEnded: boolean;
}

let browser: Browser;
let fake: FakeOpenAI;
let server: ConsoleProcess;
const dirs: string[] = [];
let page: Page | undefined;

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "console-header-"));
  dirs.push(dir);
  return dir;
}

beforeAll(async () => {
  await buildConsole();
  fake = await startFakeOpenAI();
  const { workspace, profiles } = carefulWorkspace(tempDir);
  server = await startConsole(
    ["--port", "0", "--grpc-port", "0", "--data-dir", tempDir(), "--workspace-root", `ws=${workspace}`, "--profiles", profiles],
    { OPENAI_API_KEY: "test-key", OPENAI_BASE_URL: fake.baseURL },
  );
  browser = await launchChromium();
});

afterAll(async () => {
  await page?.close();
  await browser?.close();
  server?.cli.kill();
  await server?.cli.exited;
  await fake?.close();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describe("the chat's header after Stop during an approval wait", () => {
  it("never says 'waiting for approval' once the run has ended", async () => {
    page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
    await page.addInitScript(HEADER_RECORDER);
    const transport = createGrpcTransport({ baseUrl: `http://${server.h2c}` });
    // The Backend's one runtime, the embedded one.
    const [embedded] = (await createClient(RuntimeRegistry, transport).listRuntimes({})).runtimes;
    const { worker } = await createClient(WorkerCatalog, transport).createWorker({
      runtimeId: embedded!.runtimeId,
      displayName: "Careful",
      profile: { source: { case: "builtin", value: "careful" } },
      capabilities: ["fs.read"],
      workspace: { root: "ws", path: "" },
    });
    const ref = worker!.ref!;
    await page.goto(`${server.url}#/w/${encodeURIComponent(ref.runtimeId)}/${encodeURIComponent(ref.workerId)}`);
    const header = page.locator(".chat-header .status");
    await expect.poll(() => header.textContent(), { timeout: 20_000 }).toBe("idle");

    for (let round = 1; round <= 3; round++) {
      fake.enqueue(reply({ toolCalls: [{ id: `call-${round}`, name: "list_files", arguments: '{"path":"."}' }] }));
      await page.locator("textarea.input").fill(`What files are there? (${round})`);
      await page.keyboard.press("Enter");
      await expect.poll(() => header.textContent(), { timeout: 20_000 }).toBe("waiting for approval");
      await page.getByRole("button", { name: "Stop" }).click();
      await expect.poll(() => header.textContent(), { timeout: 20_000 }).toBe("idle");
      await expect.poll(() => page!.locator(".log .stopped").count(), { timeout: 20_000 }).toBe(round);
    }

    const seen = await page.evaluate(() => (globalThis as unknown as { __headers: SeenHeader[] }).__headers);
    // Each round was seen waiting (with its run on) and then ended.
    expect(seen.filter((s) => s.header === "waiting for approval" && !s.runEnded).length, JSON.stringify(seen)).toBe(3);
    const afterEnd = seen.filter((s) => (s.header === "waiting for approval" || s.sidebar === "waiting for approval") && s.runEnded);
    expect(afterEnd, JSON.stringify(seen)).toEqual([]);
  }, 120_000);
});
