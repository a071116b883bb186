import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConnectError } from "@connectrpc/connect";
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorDetailSchema, ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { type Clients, type Harness, startHarness } from "../support/harness.js";
import { type ConsoleWithBrowser, startConsoleWithBrowser } from "./console-process.js";

/**
 * A chat's watch refused for a reason other than a missing token, a
 * deleted worker or a lost cursor, here the runtime's LIMIT_EXCEEDED when
 * the worker already has all its watchers (filled by this test with the
 * generated client): the chat kept the earlier "needs its access token"
 * text though the token had been taken, under "Connection lost.
 * Reconnecting…" forever, and never said the real reason. Headless Chromium
 * against `npm start`'s real Backend (with a token) and a real runtime it
 * has as a remote (--config), served here with a watcher limit of 2 so the
 * test can fill it directly (the Backend shares one upstream watch among
 * its clients, so it cannot be filled through the Backend).
 */

const TOKEN = "watch-refusal-token-1234";
const MAX_WATCHERS = 2;
let tokenDir: string;
let remote: Harness;
let server: ConsoleWithBrowser;
const pages: Page[] = [];
/** The test's own watches of the worker, each ended by aborting its controller. */
const held: AbortController[] = [];

beforeAll(async () => {
  tokenDir = mkdtempSync(join(tmpdir(), "console-watch-refusal-token-"));
  writeFileSync(join(tokenDir, "token"), `${TOKEN}\n`, { mode: 0o600 });
  remote = await startHarness({ limits: { maxWatchersPerWorker: MAX_WATCHERS } });
  const config = join(tokenDir, "backend.json");
  writeFileSync(config, JSON.stringify({ runtimes: [{ id: remote.runtime.runtimeId, url: remote.baseUrl }] }));
  server = await startConsoleWithBrowser({
    dataDirPrefix: "console-watch-refusal-",
    provider: false,
    args: ["--token-file", join(tokenDir, "token"), "--config", config],
  });
});

afterAll(async () => {
  for (const controller of held) controller.abort();
  await server?.close();
  await remote?.close();
  rmSync(tokenDir, { recursive: true, force: true });
});

async function giveToken(page: Page): Promise<void> {
  const field = page.getByLabel("Access token");
  await expect.poll(() => field.isVisible(), { timeout: 20_000 }).toBe(true);
  await field.fill(TOKEN);
  await page.getByRole("button", { name: "Use token" }).click();
}

/**
 * Opens one more watch of `worker`, held until its controller aborts:
 * resolves once its first message arrived (undefined) or with the error
 * that refused it.
 */
function holdWatch(client: Clients, worker: WorkerRef): Promise<ConnectError | undefined> {
  const controller = new AbortController();
  held.push(controller);
  return new Promise((resolve) => {
    void (async () => {
      try {
        for await (const _ of client.observation.watchWorker({ worker }, { signal: controller.signal })) resolve(undefined);
      } catch (error) {
        resolve(ConnectError.from(error));
      }
    })();
  });
}

describe("a chat whose watch is refused for want of a free watcher slot", () => {
  it("says the server's reason instead of the stale token text, then clears it once the watch works", async () => {
    // A worker of the remote runtime, its watcher slots all taken by the test; one more is refused.
    const client = remote.connect("grpc");
    const worker = (await client.catalog.createWorker({ runtimeId: remote.runtime.runtimeId })).worker!.ref!;
    const opened = await Promise.all(Array.from({ length: MAX_WATCHERS }, () => holdWatch(client, worker)));
    expect(opened.filter((error) => error !== undefined)).toEqual([]);
    const refusal = await holdWatch(client, worker);
    expect(refusal?.findDetails(ErrorDetailSchema)[0]?.reason).toBe(ErrorReason.LIMIT_EXCEEDED);
    const address = `${server.url}#/w/${encodeURIComponent(worker.runtimeId)}/${encodeURIComponent(worker.workerId)}`;

    // A new tab has no token: its chat asks for it. Given, the watch is refused for the full slots.
    const second = await server.browser.newPage({ viewport: { width: 1200, height: 800 } });
    pages.push(second);
    await second.goto(address);
    const error = second.locator(".chat .error");
    await expect.poll(() => error.textContent(), { timeout: 20_000 }).toContain("access token");
    await giveToken(second);
    await expect
      .poll(() => error.textContent(), { timeout: 30_000 })
      .toContain(`worker ${worker.workerId} already has ${MAX_WATCHERS} watchers`);
    expect(await error.textContent()).not.toContain("access token");
    // A refusal, not a lost connection.
    expect(await second.locator(".banner").isHidden()).toBe(true);

    // Slots free again: the next try works, and the refusal leaves.
    for (const controller of held.splice(0, 1)) controller.abort();
    await expect.poll(() => error.isHidden(), { timeout: 40_000 }).toBe(true);
    // The worker's own state from the watch (the remote runtime has no model provider).
    await expect.poll(() => second.locator(".chat-header .status").textContent(), { timeout: 20_000 }).toBe("idle · not connected");
    expect(await second.locator(".banner").isHidden()).toBe(true);
  }, 150_000);
});
