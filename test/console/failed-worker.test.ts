import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import type { Browser, Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { RuntimeRegistry } from "../../gen/worker_runtime/v1/runtime_registry_pb.js";
import { WorkerCatalog } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { WorkerInteraction } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import { WorkerObservation } from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import { WorkerStatus } from "../../gen/worker_runtime/v1/worker_pb.js";
import { launchChromium } from "../support/chromium.js";
import { damageActiveSegmentMiddle } from "../support/damaged-segment.js";
import { type FakeOpenAI, startFakeOpenAI } from "../support/fake-openai.js";
import { eventually } from "../support/harness.js";
import { replyChunks } from "../support/openai-chunks.js";
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
 * the wrong cure. A worker whose transcript the open found damaged in the
 * middle shows what can be read, then a note where the rest cannot be.
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
/** The chat address of an idle worker (not connected: the Backend has no model provider, yet it takes messages to refuse). */
let liveRoute: string;
let runtimeId: string;
/** The chat address of a worker whose transcript is damaged in the middle, and its last readable seq. */
let cutRoute: string;
let cut: WorkerRef;
let fake: FakeOpenAI;

const transport = () => createGrpcTransport({ baseUrl: `http://${server.h2c}` });
const catalog = () => createClient(WorkerCatalog, transport());

/** A new companion worker on the embedded runtime. */
async function createWorker(displayName: string): Promise<WorkerRef> {
  const { worker } = await catalog().createWorker({ runtimeId, displayName, profile: { source: { case: "builtin", value: "companion" } } });
  return worker!.ref!;
}

/** The console's address for a worker's chat. */
function routeOf(ref: WorkerRef): string {
  return `#/w/${encodeURIComponent(ref.runtimeId)}/${encodeURIComponent(ref.workerId)}`;
}

beforeAll(async () => {
  await buildConsole();
  dataDir = mkdtempSync(join(tmpdir(), "console-failed-"));
  fake = await startFakeOpenAI();
  fake.setFallback({ kind: "stream", chunks: replyChunks({ text: "An answer.", usage: { prompt: 1, completion: 1 } }) });
  const args = ["--port", "0", "--grpc-port", "0", "--data-dir", dataDir];
  // The first start answers (the cut worker needs a history); the second has no provider.
  const first = await startConsole(args, { OPENAI_API_KEY: "test-key", OPENAI_BASE_URL: fake.baseURL });
  server = first;
  const { runtimes } = await createClient(RuntimeRegistry, transport()).listRuntimes({});
  runtimeId = runtimes.find((runtime) => runtime.embedded)!.runtimeId;
  const created = await createWorker("Damaged");
  cut = await createWorker("Cut");
  const interaction = createClient(WorkerInteraction, transport());
  for (let i = 0; i < 4; i++) {
    const runId = (await interaction.sendInput({ worker: cut, input: { text: `Question ${i}` } })).run?.runId ?? "";
    await eventually(async () => (await interaction.getRun({ worker: cut, runId })).run?.status === RunStatus.COMPLETED);
  }
  first.cli.kill();
  await first.cli.exited;
  // A snapshot that is not one quarantines its worker at start-up.
  writeFileSync(join(dataDir, "workers", created.workerId, "worker.snapshot"), "not a snapshot");
  // So does a transcript damaged in the middle: what is before the damage stays readable.
  await damageActiveSegmentMiddle(join(dataDir, "workers", cut.workerId));
  cutRoute = routeOf(cut);
  // Back without a model provider: a failed worker must not read "not connected", nor blame the provider.
  server = await startConsole(args, {});
  const worker = (await catalog().getWorker({ worker: created })).worker;
  expect(worker?.status).toBe(WorkerStatus.FAILED);
  failureMessage = worker?.failureMessage ?? "";
  // The runtime's own message is plain words too now; the console still says it in its own.
  expect(failureMessage).toMatch(/stored state is damaged/);
  const stopped = await createWorker("Stopped");
  await catalog().stopWorker({ worker: stopped });
  stoppedRoute = routeOf(stopped);
  failedRoute = routeOf(created);
  liveRoute = routeOf(await createWorker("Live"));
  browser = await launchChromium();
  page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
});

afterAll(async () => {
  await page?.close();
  await browser?.close();
  server?.cli.kill();
  await server?.cli.exited;
  if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  await fake?.close();
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

    // Nothing can be typed or sent: the box says why, and is described by the note.
    await expectClosedComposer(/damaged.*no more messages.*operator.*inspect.*delete/s);
    expect(await page.locator("body").textContent()).not.toContain(failureMessage);
    expect(await page.locator("body").textContent()).not.toContain("worker.snapshot");
  });

  it("opens the message box again when the reader picks a live worker in the list", async () => {
    await page.locator(`.sidebar .worker a[href="${liveRoute}"]`).click();
    await expect.poll(() => page.locator(".chat-header .status").textContent()).toMatch(/^idle/);
    await expectOpenComposer("Live");
    expect(await page.locator(".chat .ended").isVisible()).toBe(false);
  });

  it("and a STOPPED one: reads stopped, and says so on opening, not only once a message is refused", async () => {
    await page.goto(`${server.url}${stoppedRoute}`);
    await expect.poll(() => page.locator(".sidebar .worker.selected .worker-status").textContent()).toBe("stopped");
    await expect.poll(() => page.locator(".chat-header .status").textContent()).toBe("stopped");
    await expect.poll(() => page.locator(".chat .ended").textContent()).toMatch(/stopped and takes no more messages/);
    expect(await page.locator(".chat .not-connected").isVisible()).toBe(false);
    await expectClosedComposer(/stopped and takes no more messages/);
  });

  it("closes the message box as soon as the open worker is stopped, keeping what the reader had typed", async () => {
    const worker = await createWorker("Stopped while open");
    await page.goto(`${server.url}${routeOf(worker)}`);
    await expect.poll(() => page.locator(".chat-header .status").textContent()).toMatch(/^idle/);
    await expectOpenComposer("Stopped while open");
    await page.locator("textarea.input").fill("A draft");
    await catalog().stopWorker({ worker });
    await expect.poll(() => page.locator(".chat-header .status").textContent()).toBe("stopped");
    await expectClosedComposer(/stopped and takes no more messages/);
    expect(await page.locator("textarea.input").inputValue()).toBe("A draft");
  });

  it("still says in plain words why a message was refused when the page could not learn the worker had ended", async () => {
    // No watch gets through, so the page never hears the worker is stopped: the runtime's refusal is what tells.
    await page.route("**/WatchWorker", (route) => route.abort());
    try {
      await page.goto(`${server.url}${stoppedRoute}`);
      await expect.poll(() => page.locator(".banner").isVisible()).toBe(true);
      await page.locator("textarea.input").fill("Still there?");
      await page.keyboard.press("Enter");
      await expect.poll(() => page.locator(".chat .error").textContent()).toMatch(/stopped and takes no more messages/);
    } finally {
      await page.unroute("**/WatchWorker");
    }
  });
});

describe("a FAILED worker whose transcript is damaged in the middle", () => {
  it("shows the entries that can be read, then a note that the rest cannot be, in the console's words", async () => {
    const { lastSeq, cut: runtimeCut } = await createClient(WorkerObservation, transport()).readTranscript({ worker: cut });
    expect(runtimeCut?.readableThroughSeq).toBe(lastSeq);
    await page.goto(`${server.url}${cutRoute}`);
    await expect.poll(() => page.locator(".chat-header .status").textContent()).toBe("failed");
    const note = page.locator(".log .history-cut");
    await expect.poll(() => note.isVisible()).toBe(true);
    expect(await note.textContent()).toMatch(/rest of this conversation cannot be read.*damaged.*backup.*delete/s);
    expect(await page.locator(".log .entry").count()).toBe(Number(lastSeq));
    // Where the readable part ends: after the last entry, the last thing in the conversation.
    expect(await page.locator(".log > :last-child").getAttribute("class")).toBe("history-cut");
    expect(await page.locator("body").textContent()).not.toContain(runtimeCut?.message ?? "");
  });
});

describe("a worker deleted while it is open", () => {
  it("says it no longer exists, stops reconnecting, and takes no more messages", async () => {
    const worker = await createWorker("Deleted while open");
    await page.goto(`${server.url}${routeOf(worker)}`);
    await expect.poll(() => page.locator(".chat-header .status").textContent()).toMatch(/^idle/);
    await expectOpenComposer("Deleted while open");
    // Every text a status element shows from here on, recorded by the page as it changes: a poll
    // could miss "Reconnecting…" shown for a moment before the deletion is learned.
    await page.evaluate(STATUS_RECORDER);
    // The watch's own NOT_FOUND says it: the page need not ask GetWorker why the stream ended.
    const asked: string[] = [];
    page.on("request", (request) => {
      if (request.url().endsWith("worker_runtime.v1.WorkerCatalog/GetWorker")) asked.push(request.url());
    });
    await catalog().deleteWorker({ worker, force: true });
    await expectClosedComposer(/no longer exists/);
    // The header agrees with the note: deleted, not the "stopped" the forced delete's last change said.
    await expect.poll(() => page.locator(".chat-header .status").textContent()).toBe("deleted");
    expect(asked).toEqual([]);
    expect(await page.locator(".banner").isVisible()).toBe(false);
    const shown = await page.evaluate<string[]>("window.__statusTexts");
    expect(shown.some((text) => /no longer exists/.test(text))).toBe(true);
    // The stream's end is no lost connection here: the worker is gone, and the page says so at once.
    expect(shown.filter((text) => /Reconnecting/.test(text))).toEqual([]);
  });
});

describe("a worker that never existed", () => {
  it.each([
    ["on this runtime", () => `#/w/${encodeURIComponent(runtimeId)}/w-nope`],
    ["on a runtime the Backend does not know", () => "#/w/nope/w-nope"],
  ])("says it was not found %s, not that it no longer exists", async (_, route) => {
    await page.goto(`${server.url}${route()}`);
    await expectClosedComposer(/not found/);
    const input = page.locator("textarea.input");
    const note = page.locator(`[id="${await input.getAttribute("aria-describedby")}"]`);
    expect(await note.textContent()).not.toMatch(/no longer exists/);
    expect(await input.getAttribute("placeholder")).not.toMatch(/no longer exists/);
    expect(await page.locator(".chat-header .status").textContent()).toBe("not found");
  });
});

/** Records, in `window.__statusTexts`, the text of every visible status element each time the page changes. */
const STATUS_RECORDER = `
  window.__statusTexts = [];
  new MutationObserver(() => {
    for (const element of document.querySelectorAll('[role="status"]')) {
      if (!element.hidden && element.textContent) window.__statusTexts.push(element.textContent);
    }
  }).observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true });
`;

/** The message box and Send are disabled, the box's placeholder and its described-by note saying why. */
async function expectClosedComposer(why: RegExp): Promise<void> {
  const input = page.locator("textarea.input");
  const note = async () => {
    const described = await input.getAttribute("aria-describedby");
    return described ? page.locator(`[id="${described}"]`) : undefined;
  };
  await expect.poll(async () => (await (await note())?.textContent()) ?? "").toMatch(why);
  expect(await (await note())?.isVisible()).toBe(true);
  expect(await input.isDisabled()).toBe(true);
  expect(await page.getByRole("button", { name: "Send" }).isDisabled()).toBe(true);
  expect(await input.getAttribute("placeholder")).toMatch(/no more messages|no longer exists|not found/);
}

/** The message box and Send take messages again, with the ordinary placeholder (naming the worker) and no note. */
async function expectOpenComposer(name: string): Promise<void> {
  const input = page.locator("textarea.input");
  await expect.poll(() => input.isDisabled()).toBe(false);
  expect(await page.getByRole("button", { name: "Send" }).isDisabled()).toBe(false);
  // It said "the companion" for every worker, whatever its profile.
  await expect.poll(() => input.getAttribute("placeholder")).toBe(`Message ${name}… (Enter sends, Shift+Enter for a new line)`);
  expect(await input.getAttribute("aria-describedby")).toBeNull();
}
