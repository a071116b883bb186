import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { RuntimeRegistry } from "../../gen/worker_runtime/v1/runtime_registry_pb.js";
import { WorkerCatalog } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { WorkerStatus } from "../../gen/worker_runtime/v1/worker_pb.js";
import { launchChromium } from "../support/chromium.js";
import { buildConsole, type ConsoleProcess, startConsole } from "./console-process.js";

// Polls wait for Chromium to show what a real server sent: seconds on a loaded machine.
vi.setConfig({ expect: { poll: { timeout: 20_000 } } });

/**
 * A FAILED worker in real headless Chromium against `npm start`'s entry: its
 * stored state found damaged at start-up (the file store quarantines it, as
 * in test/backend/ended-worker.test.ts). The reader must learn in plain words
 * what happened and what can be done, in the console's words rather than the
 * runtime's message written for API clients; the list and the chat header say "failed",
 * not "failed · not connected", and no provider hint sends the reader after
 * the wrong cure.
 */

let browser: Browser;
let server: ConsoleProcess;
let dataDir: string;
let page: Page;
/** The chat address of the worker whose snapshot is damaged, and its runtime's own failure message. */
let failedRoute: string;
let failureMessage: string;
/** The chat address of a worker stopped through the Backend. */
let stoppedRoute: string;

beforeAll(async () => {
  await buildConsole();
  dataDir = mkdtempSync(join(tmpdir(), "console-failed-"));
  const args = ["--port", "0", "--grpc-port", "0", "--data-dir", dataDir];
  const env = { OPENAI_API_KEY: "test-key" };
  const first = await startConsole(args, env);
  const transport = () => createGrpcTransport({ baseUrl: `http://${server.h2c}` });
  const catalog = () => createClient(WorkerCatalog, transport());
  server = first;
  const { runtimes } = await createClient(RuntimeRegistry, transport()).listRuntimes({});
  const runtimeId = runtimes.find((runtime) => runtime.embedded)!.runtimeId;
  const created = (
    await catalog().createWorker({ runtimeId, displayName: "Damaged", profile: { source: { case: "builtin", value: "companion" } } })
  ).worker?.ref;
  first.cli.kill();
  await first.cli.exited;
  // A snapshot that is not one quarantines its worker at start-up.
  writeFileSync(join(dataDir, "workers", created!.workerId, "worker.snapshot"), "not a snapshot");
  // Back without a model provider: a failed worker must not read "not connected", nor blame the provider.
  server = await startConsole(args, {});
  const worker = (await catalog().getWorker({ worker: created })).worker;
  expect(worker?.status).toBe(WorkerStatus.FAILED);
  failureMessage = worker?.failureMessage ?? "";
  // The runtime's own message is plain words too now; the console still says it in its own.
  expect(failureMessage).toMatch(/stored state is damaged/);
  const stopped = (
    await catalog().createWorker({ runtimeId, displayName: "Stopped", profile: { source: { case: "builtin", value: "companion" } } })
  ).worker?.ref;
  await catalog().stopWorker({ worker: stopped });
  stoppedRoute = `#/w/${encodeURIComponent(stopped!.runtimeId)}/${encodeURIComponent(stopped!.workerId)}`;
  failedRoute = `#/w/${encodeURIComponent(created!.runtimeId)}/${encodeURIComponent(created!.workerId)}`;
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
});

afterAll(async () => {
  await page?.close();
  await browser?.close();
  server?.cli.kill();
  await server?.cli.exited;
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
});

describe("a FAILED worker (its stored state damaged)", () => {
  it("reads failed in the list and the header, and says in plain words what happened and what can be done", async () => {
    await page.goto(`${server.url}${failedRoute}`);
    await expect.poll(() => page.locator(".sidebar .worker.selected .worker-status").textContent()).toBe("failed");
    await expect.poll(() => page.locator(".chat-header .status").textContent()).toBe("failed");
    // Told on opening, before anything is sent: the worker takes no more messages, and why.
    const notice = page.locator(".chat .ended");
    await expect.poll(() => notice.isVisible()).toBe(true);
    await expect(notice.textContent()).resolves.toMatch(/damaged.*no more messages.*operator.*inspect.*delete/s);
    // What the reader can act on, not a provider hint meant for a worker that could run.
    expect(await page.locator(".chat .not-connected").isVisible()).toBe(false);

    await page.locator("textarea.input").fill("Are you there?");
    await page.keyboard.press("Enter");
    const error = page.locator(".chat .error");
    await expect.poll(() => error.textContent()).toMatch(/damaged.*no more messages.*operator.*inspect.*delete/s);
    expect(await page.locator("body").textContent()).not.toContain(failureMessage);
    expect(await page.locator("body").textContent()).not.toContain("worker.snapshot");
  });

  it("and a STOPPED one: reads stopped, and says so on opening, not only once a message is refused", async () => {
    await page.goto(`${server.url}${stoppedRoute}`);
    await expect.poll(() => page.locator(".sidebar .worker.selected .worker-status").textContent()).toBe("stopped");
    await expect.poll(() => page.locator(".chat-header .status").textContent()).toBe("stopped");
    await expect.poll(() => page.locator(".chat .ended").textContent()).toMatch(/stopped and takes no more messages/);
    expect(await page.locator(".chat .not-connected").isVisible()).toBe(false);
    await page.locator("textarea.input").fill("Still there?");
    await page.keyboard.press("Enter");
    await expect.poll(() => page.locator(".chat .error").textContent()).toMatch(/stopped and takes no more messages/);
  });
});
