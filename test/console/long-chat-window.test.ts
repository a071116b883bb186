import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { BusyPolicy, type WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { RuntimeRegistry } from "../../gen/worker_runtime/v1/runtime_registry_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { WorkerCatalog } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { WorkerInteraction } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import { reply, replyChunks } from "../support/openai-chunks.js";
import { type ConsoleWithProvider, startConsoleWithBrowser } from "./console-process.js";

/**
 * The edges of the chat's bounded window over a long history (MAX_SHOWN in
 * web/src/conversation.ts, 200 entries and marks): an older page that
 * arrives after the window moved, and a run's "stopped" mark whose entry
 * left the window and came back. One worker, seeded once over gRPC: 130
 * answered rounds (seq 1..260), then a run stopped mid-answer (its question
 * is seq 261, the newest entry, its "stopped" mark after it). Each test
 * opens it in a page of its own. The console in real headless Chromium
 * against `npm start`'s entry and the fake provider.
 */

// Each poll waits for Chromium to show what a real server sent: seconds on a loaded machine.
vi.setConfig({ expect: { poll: { timeout: 20_000 } } });

const ROUNDS = 130;
const NEWEST = 2 * ROUNDS + 1;

let consoleProcess: ConsoleWithProvider;
let ref: WorkerRef;

beforeAll(async () => {
  consoleProcess = await startConsoleWithBrowser({ dataDirPrefix: "console-window-" });
  const transport = createGrpcTransport({ baseUrl: `http://${consoleProcess.h2c}` });
  const [embedded] = (await createClient(RuntimeRegistry, transport).listRuntimes({})).runtimes;
  const { worker } = await createClient(WorkerCatalog, transport).createWorker({
    runtimeId: embedded!.runtimeId,
    displayName: "Long chat window",
    profile: { source: { case: "builtin", value: "companion" } },
  });
  ref = worker!.ref!;
  const interaction = createClient(WorkerInteraction, transport);
  for (let i = 1; i <= ROUNDS; i++) {
    consoleProcess.fake.enqueue(reply({ text: `answer ${i}` }));
    for await (const message of interaction.streamInput({ worker: ref, input: { text: `question ${i}` }, busyPolicy: BusyPolicy.REJECT })) {
      void message;
    }
  }
  // A run stopped while its answer streams: it commits its question only.
  consoleProcess.fake.enqueue({
    kind: "stream",
    chunks: replyChunks({ text: "This one goes on and on.", pieceSize: 2 }),
    delayMs: 30,
    end: "hang",
  });
  const { run } = await interaction.sendInput({ worker: ref, input: { text: "stopped question" }, busyPolicy: BusyPolicy.REJECT });
  await consoleProcess.fake.waitForRequests(ROUNDS + 1);
  const cancelled = await interaction.cancelRun({ worker: ref, runId: run!.runId });
  expect(cancelled.run?.status).toBe(RunStatus.CANCELLED);
  // 130 rounds over gRPC: about 20 s on the idle 2-core VM, several times that under load.
}, 240_000);

afterAll(async () => {
  await consoleProcess?.close();
});

async function openChat(): Promise<Page> {
  const page = await consoleProcess.browser.newPage({ viewport: { width: 1200, height: 800 } });
  await page.goto(`${consoleProcess.url}#/w/${encodeURIComponent(ref.runtimeId)}/${encodeURIComponent(ref.workerId)}`);
  await expect.poll(() => lastShown(page), { message: "the newest entry shown after opening the chat" }).toBe(NEWEST);
  return page;
}

/** The seqs of the entries shown, in page order. */
async function shownSeqs(page: Page): Promise<number[]> {
  return (await page.locator(".log .entry").evaluateAll((entries) => entries.map((entry) => entry.getAttribute("data-seq")))).map(Number);
}

async function firstShown(page: Page): Promise<number> {
  return (await shownSeqs(page))[0] ?? 0;
}

async function lastShown(page: Page): Promise<number> {
  return (await shownSeqs(page)).at(-1) ?? 0;
}

async function scrollTo(page: Page, where: "top" | "bottom"): Promise<void> {
  await page.locator(".scroller").evaluate((element, top) => {
    element.scrollTop = top ? 0 : element.scrollHeight;
  }, where === "top");
}

/**
 * Scrolls to the top until the page asks for an older page, and holds that
 * answer back (later ReadTranscript calls pass) until the returned function
 * is called.
 */
async function holdNextOlderPage(page: Page): Promise<() => void> {
  let release: (() => void) | undefined;
  let held = false;
  await page.route("**/ReadTranscript", async (route) => {
    if (held) return route.continue();
    held = true;
    await new Promise<void>((resolve) => {
      release = resolve;
    });
    await route.continue();
  });
  // Scrolled to the top again each time, as a page still on its way when the route was set is not held.
  await expect
    .poll(
      async () => {
        if (!held) await scrollTo(page, "top");
        return held;
      },
      { message: "the older page asked for" },
    )
    .toBe(true);
  return () => release?.();
}

/** Every seq from the first shown to the last, none missing. */
function contiguous(seqs: readonly number[]): number[] {
  const first = seqs[0] ?? 0;
  return Array.from({ length: seqs.length }, (_, i) => first + i);
}

describe("a long chat's window", () => {
  it("puts no older page asked for before the window moved above it: it asks again for the page before the new first entry", async () => {
    const page = await openChat();
    try {
      // Read back until the window is full and the newest entries left it (read again when scrolled down to).
      await expect
        .poll(
          async () => {
            await scrollTo(page, "top");
            return lastShown(page);
          },
          { timeout: 60_000, message: "the newest entries leaving the window as older pages come" },
        )
        .toBeLessThan(NEWEST);
      await expect.poll(() => page.locator(".log > *").count(), { message: "the window filled to its bound" }).toBeGreaterThan(190);

      // The next older page is asked for, and its answer held back.
      const release = await holdNextOlderPage(page);
      const before = await firstShown(page);

      // Meanwhile the reader scrolls down: newer pages come and the oldest entries leave the window.
      await expect
        .poll(
          async () => {
            await scrollTo(page, "bottom");
            return firstShown(page);
          },
          { message: "the oldest entries leaving as newer pages come" },
        )
        .toBeGreaterThan(before);
      // And back up, while the older page asked for before is still on its way.
      await scrollTo(page, "top");
      const moved = await firstShown(page);

      const answered = page.waitForResponse("**/ReadTranscript", { timeout: 20_000 });
      release();
      await answered;
      // The page before `before` no longer fits above `moved`; the page before `moved` comes instead.
      await expect.poll(() => firstShown(page), { message: "an older page put above the moved window" }).toBeLessThan(moved);
      const seqs = await shownSeqs(page);
      expect(seqs).toEqual(contiguous(seqs));
      await page.unroute("**/ReadTranscript");
    } finally {
      await page.close();
    }
  }, 180_000);

  // The older page was put above and the newest entries dropped to keep the window's bound: the reader, back at the
  // newest output, saw it vanish from under their eyes and the live output hidden, until they scrolled again.
  it("keeps the newest entries when an older page arrives after the reader went back down to them", async () => {
    const page = await openChat();
    try {
      // Read back until the window is full, then down again to the newest: a full window showing them.
      await expect.poll(() => scrollTo(page, "top").then(() => page.locator(".log > *").count()), { timeout: 60_000 }).toBeGreaterThan(190);
      // Nudged up before each scroll down: a page that lands while the view already sits at the bottom moves nothing, and
      // with no scroll event no newer page is asked for (CI sat at 221 for a minute).
      await expect
        .poll(
          async () => {
            await page.locator(".scroller").evaluate((element) => {
              element.scrollTop = Math.max(0, element.scrollTop - 200);
            });
            await scrollTo(page, "bottom");
            return lastShown(page);
          },
          { timeout: 60_000 },
        )
        .toBe(NEWEST);
      await expect.poll(() => page.locator(".log > *").count()).toBeGreaterThan(190);
      const release = await holdNextOlderPage(page);
      await scrollTo(page, "bottom");
      // The newest entry shown in every frame from before the page arrives until 2 s after (its runs are looked up
      // first, another call).
      const newestShown = page.evaluate<number[]>(`new Promise((resolve) => {
        const seen = new Set();
        const end = performance.now() + 2000;
        const frame = () => {
          const entries = document.querySelectorAll(".log .entry");
          seen.add(Number(entries[entries.length - 1]?.getAttribute("data-seq")));
          if (performance.now() < end) requestAnimationFrame(frame);
          else resolve([...seen]);
        };
        frame();
      })`);
      release();
      expect(await newestShown).toEqual([NEWEST]);
      expect(await lastShown(page)).toBe(NEWEST);
      expect(await page.locator(".log .stopped").count()).toBe(1);
      const seqs = await shownSeqs(page);
      expect(seqs).toEqual(contiguous(seqs));
      await page.unroute("**/ReadTranscript");
    } finally {
      await page.close();
    }
  }, 180_000);

  it("shows a stopped run's mark again when its entry, the newest, comes back after the reader read back to the start", async () => {
    const page = await openChat();
    try {
      await expect.poll(() => page.locator(".log .stopped").count(), { message: "the stopped mark after opening" }).toBe(1);
      await expect
        .poll(
          async () => {
            await scrollTo(page, "top");
            return firstShown(page);
          },
          { timeout: 60_000, message: "reading back to the first entry" },
        )
        .toBe(1);
      // The stopped run's entry (the newest) and its mark left the window.
      expect(await lastShown(page)).toBeLessThan(NEWEST);
      expect(await page.locator(".log .stopped").count()).toBe(0);
      await expect
        .poll(
          async () => {
            await scrollTo(page, "bottom");
            return lastShown(page);
          },
          { timeout: 60_000, message: "reading down to the newest entry" },
        )
        .toBe(NEWEST);
      await expect.poll(() => page.locator(".log .stopped").count(), { message: "the stopped mark back with its entry" }).toBe(1);
      // Just after the run's entry, the last thing in the conversation.
      const lastTwo = await page
        .locator(".log > *")
        .evaluateAll((elements) =>
          elements.slice(-2).map((element) => `${element.className} ${element.getAttribute("data-seq") ?? ""}`.trim()),
        );
      expect(lastTwo).toEqual([`entry user ${NEWEST}`, "stopped"]);
    } finally {
      await page.close();
    }
  }, 180_000);
  it("takes a stopped run's mark out with its entry when following trims the oldest, so scrolling up reads the entry back", async () => {
    const transport = createGrpcTransport({ baseUrl: `http://${consoleProcess.h2c}` });
    const { worker } = await createClient(WorkerCatalog, transport).createWorker({
      runtimeId: ref.runtimeId,
      displayName: "Stopped first",
      profile: { source: { case: "builtin", value: "companion" } },
    });
    const fresh = worker!.ref!;
    const interaction = createClient(WorkerInteraction, transport);
    const page = await consoleProcess.browser.newPage({ viewport: { width: 1200, height: 800 } });
    try {
      await page.goto(`${consoleProcess.url}#/w/${encodeURIComponent(fresh.runtimeId)}/${encodeURIComponent(fresh.workerId)}`);
      await expect.poll(() => page.locator(".chat-header .status").textContent(), { message: "the new worker idle" }).toContain("idle");
      // Followed live: a stopped run first (its question seq 1, its mark after it), then 99 answered rounds
      // (seq 2..199): 200 entries and marks, the window's bound, nothing trimmed yet.
      // Stopped before its answer began (the provider waits 30 s before its first chunk): only its question is committed.
      const asked = consoleProcess.fake.requests.length;
      consoleProcess.fake.enqueue({ kind: "stream", chunks: replyChunks({ text: "cut short" }), delayMs: 30_000, end: "hang" });
      const stopped = await interaction.sendInput({ worker: fresh, input: { text: "stopped first" }, busyPolicy: BusyPolicy.REJECT });
      await consoleProcess.fake.waitForRequests(asked + 1);
      await interaction.cancelRun({ worker: fresh, runId: stopped.run!.runId });
      await expect.poll(() => page.locator(".log .stopped").count(), { message: "the first run marked stopped" }).toBe(1);
      for (let i = 1; i <= 99; i++) {
        consoleProcess.fake.enqueue(reply({ text: `answer ${i}` }));
        for await (const message of interaction.streamInput({
          worker: fresh,
          input: { text: `question ${i}` },
          busyPolicy: BusyPolicy.REJECT,
        })) {
          void message;
        }
      }
      await expect.poll(() => lastShown(page), { timeout: 60_000, message: "the 99 rounds shown" }).toBe(199);
      expect(await page.locator(".log > *").count()).toBe(200);
      // One entry more (a question whose answer has not begun): the oldest entry leaves, the stopped one's.
      consoleProcess.fake.enqueue({ kind: "stream", chunks: replyChunks({ text: "later" }), delayMs: 30_000, end: "hang" });
      const { run } = await interaction.sendInput({ worker: fresh, input: { text: "one more" }, busyPolicy: BusyPolicy.REJECT });
      await expect.poll(() => lastShown(page), { message: "the one more question shown" }).toBe(200);
      await expect.poll(() => firstShown(page), { message: "the oldest entry trimmed" }).toBe(2);
      // Its mark left with it, rather than standing at the top above an entry of another run.
      expect(await page.locator(".log > *").first().getAttribute("data-seq")).toBe("2");
      await interaction.cancelRun({ worker: fresh, runId: run!.runId });

      // Scrolled to the top, the stopped question and its mark come back.
      await expect
        .poll(
          async () => {
            await scrollTo(page, "top");
            return firstShown(page);
          },
          { message: "the stopped question read back" },
        )
        .toBe(1);
      const firstTwo = await page
        .locator(".log > *")
        .evaluateAll((elements) =>
          elements.slice(0, 2).map((element) => `${element.className} ${element.getAttribute("data-seq") ?? ""}`.trim()),
        );
      expect(firstTwo).toEqual(["entry user 1", "stopped"]);
    } finally {
      await page.close();
    }
  }, 180_000);
});
