import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import type { Browser, ConsoleMessage, Page } from "playwright-core";
import { launchChromium } from "../support/chromium.js";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { BusyPolicy, type WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { WorkerCatalog } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { ApprovalDecision, WorkerInteraction } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import { decisionRequestId } from "../../src/cli/client/decision-request-id.js";
import { type CliProcess, REPO_ROOT, startCli } from "../support/cli-process.js";
import { type FakeOpenAI, startFakeOpenAI } from "../support/fake-openai.js";
import { reply, replyChunks } from "../support/openai-chunks.js";
import { startCuttableProxy } from "../support/cuttable-proxy.js";
import { buildConsole, type ConsoleProcess, startConsole, carefulWorkspace } from "./console-process.js";

// Every poll here waits for Chromium to show what a real server sent (a page load, a watch's
// round trips, a frame): correct but slow work that takes seconds on a loaded machine, far past
// expect.poll's 1 s default (it failed "shows the same conversation after a reload" there).
// The file's polls get 20 s, as the rest of its polls already said one by one; what they assert
// is unchanged, and a poll still ends as soon as its assertion holds.
vi.setConfig({ expect: { poll: { timeout: 20_000 } } });

/**
 * The console in real headless Chromium against `npm start`'s entry (a real
 * process: Backend, embedded runtime, file store, served bundle) pointed at
 * the fake OpenAI server. Screenshots go to test-artifacts/console/.
 */
const ARTIFACTS = join(REPO_ROOT, "test-artifacts", "console");

let browser: Browser;
let fake: FakeOpenAI;
const dirs: string[] = [];
const processes: ConsoleProcess[] = [];
const runtimes: CliProcess[] = [];

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "console-test-"));
  dirs.push(dir);
  return dir;
}

async function start(args: string[], env: Record<string, string>): Promise<ConsoleProcess> {
  const started = await startConsole(["--port", "0", "--grpc-port", "0", ...args], env);
  processes.push(started);
  return started;
}

async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`) });
}

/** The trimmed texts of every element matching `selector` (rendered markdown ends in a newline). */
async function texts(page: Page, selector: string): Promise<string[]> {
  return (await page.locator(selector).allTextContents()).map((text) => text.trim());
}

/** Counts the distinct texts the streaming reply showed, from the page itself. */
const RENDER_RECORDER = `
  window.__renders = [];
  new MutationObserver(() => {
    const live = document.querySelector(".live .entry.assistant");
    const text = live ? live.textContent : "";
    if (text && window.__renders[window.__renders.length - 1] !== text) window.__renders.push(text);
  }).observe(document, { subtree: true, childList: true, characterData: true });
`;

beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  await buildConsole();
  fake = await startFakeOpenAI();
  browser = await launchChromium();
});

afterAll(async () => {
  await browser?.close();
  for (const started of processes) started.cli.kill();
  for (const runtime of runtimes) runtime.kill();
  await Promise.all([...processes.map((started) => started.cli.exited), ...runtimes.map((runtime) => runtime.exited)]);
  await fake?.close();
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describe("console with a model provider", () => {
  let server: ConsoleProcess;
  let dataDir: string;
  let workspace: string;
  let page: Page;
  let chatUrl: string;

  beforeAll(async () => {
    dataDir = tempDir();
    let profiles: string;
    ({ workspace, profiles } = carefulWorkspace(tempDir));
    server = await start(["--data-dir", dataDir, "--workspace-root", `ws=${workspace}`, "--profiles", profiles], {
      OPENAI_API_KEY: "test-key",
      OPENAI_BASE_URL: fake.baseURL,
    });
    page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
    await page.addInitScript(RENDER_RECORDER);
  });

  it("creates a companion, streams a reply token by token and finishes it", async () => {
    // A fresh page logs no error (a browser's own /favicon.ico request was a 404 in its console).
    const errors: string[] = [];
    const onConsole = (message: ConsoleMessage): void => {
      if (message.type() === "error") errors.push(`${message.text()} ${message.location().url}`);
    };
    page.on("console", onConsole);
    await page.goto(server.url, { waitUntil: "networkidle" });
    page.off("console", onConsole);
    expect(errors).toEqual([]);
    await page.getByRole("button", { name: "New companion" }).click();
    await page.waitForURL(/#\/w\//, { timeout: 20_000 });
    chatUrl = page.url();
    await expect.poll(() => page.locator(".sidebar .worker").count()).toBe(1);
    await expect.poll(() => page.locator(".health.ready").count()).toBe(1);

    const text = "Hello! I am the **companion**, streaming this answer to you piece by piece.";
    fake.enqueue(reply({ reasoning: "The user greets me.", text, pieceSize: 3 }, { delayMs: 40 }));
    await page.locator("textarea.input").fill("Hi there");
    await page.keyboard.press("Enter");
    await expect.poll(() => page.locator(".log .entry.assistant").count(), { timeout: 20_000 }).toBe(1);
    await expect(texts(page, ".log .entry.assistant")).resolves.toEqual([
      "Hello! I am the companion, streaming this answer to you piece by piece.",
    ]);
    await expect(page.locator(".log .entry.assistant strong").textContent()).resolves.toBe("companion");
    const renders = await page.evaluate(() => (globalThis as unknown as { __renders: string[] }).__renders);
    expect(renders.length).toBeGreaterThanOrEqual(5);
    // Each render extends the last (markdown markers aside: "**comp" renders before "companion" is bold).
    const plain = renders.map((render) => render.replace(/\*/g, "").trim());
    for (let i = 1; i < plain.length; i++) expect(plain[i]!.startsWith(plain[i - 1]!), `${plain[i - 1]} -> ${plain[i]}`).toBe(true);
    await expect(page.locator(".log .entry.user").textContent()).resolves.toBe("Hi there");
    await expect.poll(() => page.locator("button.stop").isHidden()).toBe(true);
    // Reasoning is shown, collapsed.
    await expect(texts(page, ".log details.reasoning .body")).resolves.toEqual(["The user greets me."]);
    expect(await page.locator(".log details.reasoning").getAttribute("open")).toBeNull();
    // The raw event view holds the events as they arrived (kept while it was closed, shown as JSON on opening).
    await page.locator("details.raw summary").click();
    await expect.poll(() => page.locator(".raw-events").textContent()).toContain('"textDelta"');
    await page.locator("details.raw summary").click();
    await expect.poll(() => page.locator(".raw-events > div").count()).toBe(0);
    await shot(page, "1-streamed-reply");
  });

  it("stops a second reply mid-stream and marks it stopped", async () => {
    fake.enqueue({
      kind: "stream",
      chunks: replyChunks({ text: "This one goes on and on and on and on and on and on.", pieceSize: 2 }),
      delayMs: 30,
      end: "hang",
    });
    // Open, the raw event view shows messages as they arrive.
    await page.locator("details.raw summary").click();
    await page.locator("textarea.input").fill("Tell me a long story");
    await page.getByRole("button", { name: "Send" }).click();
    await expect
      .poll(async () => (await page.locator(".live .entry.assistant").textContent()) ?? "", { timeout: 20_000 })
      .toMatch(/on and/);
    await expect.poll(() => page.locator(".raw-events").textContent()).toContain("Tell me a long story");
    await page.locator("details.raw summary").click();
    await page.locator("textarea.input").fill("And another thing");
    await page.keyboard.press("Enter");
    // As the spec has it (SendInput, busy policy REJECT): refused, not queued. Said so, and the message stays in the box.
    await expect
      .poll(() => page.locator(".chat .error").textContent())
      .toMatch(/^Not sent: the worker is still answering the previous message.*not queued.*kept in the box/);
    expect(await page.locator("textarea.input").inputValue()).toBe("And another thing");
    await page.getByRole("button", { name: "Stop" }).click();
    await expect.poll(() => page.locator(".log .stopped").count(), { timeout: 20_000 }).toBe(1);
    await expect.poll(() => page.locator("button.stop").isHidden()).toBe(true);
    // The refusal was about the answer that has now ended: it leaves with it, not to sit under an idle header.
    await expect.poll(() => page.locator(".chat-header .status").textContent()).toBe("idle");
    await expect.poll(() => page.locator(".chat .error").isHidden()).toBe(true);
    await shot(page, "2-stopped");
  });

  it("shows the same conversation after a reload", async () => {
    await page.reload();
    await expect.poll(() => page.locator(".log .entry.user").allTextContents()).toEqual(["Hi there", "Tell me a long story"]);
    await expect(page.locator(".log .entry.assistant").first().textContent()).resolves.toContain("streaming this answer");
    await expect.poll(() => page.locator(".log .stopped").count()).toBe(1);
    await shot(page, "3-reloaded");
  });

  /** A companion worker on the chat's runtime with `rounds` questions already answered (`answer(i)`), opened in the page. */
  async function openWorkerWithHistory(displayName: string, rounds: number, answer: (i: number) => string): Promise<void> {
    const transport = createGrpcTransport({ baseUrl: `http://${server.h2c}` });
    const catalog = createClient(WorkerCatalog, transport);
    const interaction = createClient(WorkerInteraction, transport);
    const runtimeId = decodeURIComponent(/#\/w\/([^/]+)\//.exec(chatUrl)![1]!);
    const { worker } = await catalog.createWorker({ runtimeId, displayName, profile: { source: { case: "builtin", value: "companion" } } });
    const ref = worker!.ref!;
    for (let i = 1; i <= rounds; i++) {
      fake.enqueue(reply({ text: answer(i) }));
      for await (const message of interaction.streamInput({
        worker: ref,
        input: { text: `question ${i}` },
        busyPolicy: BusyPolicy.REJECT,
      })) {
        void message;
      }
    }
    await page.goto(`${server.url}#/w/${encodeURIComponent(ref.runtimeId)}/${encodeURIComponent(ref.workerId)}`);
  }

  it("pages back through a long history when scrolling up, keeping the reader's place", async () => {
    await openWorkerWithHistory("Long history", 40, (i) => `answer ${i}`);
    await expect.poll(() => page.locator(".log .entry.user").last().textContent()).toBe("question 40");
    expect(await page.locator(".log .entry").count()).toBeLessThan(80);
    await expect(page.locator('.log .entry[data-seq="1"]').count()).resolves.toBe(0);
    for (let i = 0; i < 10 && (await page.locator('.log .entry[data-seq="1"]').count()) === 0; i++) {
      const firstSeq = await page.locator(".log .entry").first().getAttribute("data-seq");
      await page.locator(".scroller").evaluate((element) => {
        element.scrollTop = 0;
      });
      await expect.poll(async () => page.locator(".log .entry").first().getAttribute("data-seq")).not.toBe(firstSeq);
      // The entry that was at the top is still in view: the new page went above it.
      const kept = await page.locator(`.log .entry[data-seq="${firstSeq}"]`).evaluate((element) => {
        const scroller = element.closest(".scroller")!.getBoundingClientRect();
        const box = element.getBoundingClientRect();
        return box.top >= scroller.top - 5 && box.top < scroller.bottom;
      });
      expect(kept).toBe(true);
    }
    await expect(page.locator('.log .entry[data-seq="1"]').textContent()).resolves.toBe("question 1");
    const users = await page.locator(".log .entry.user").allTextContents();
    expect(users).toEqual(Array.from({ length: 40 }, (_, i) => `question ${i + 1}`));
    await shot(page, "4-history-paged");
  });

  it("reads older pages by itself while the newest page does not fill a tall window, so scrolling up can reach them", async () => {
    // 30 one-line entries stand about 1,700 px tall: in this window the scroller would have nothing to scroll, so no scroll
    // event would ever ask for the older pages.
    await page.setViewportSize({ width: 1200, height: 2400 });
    try {
      await openWorkerWithHistory("Short lines", 40, (i) => `a${i}`);
      await expect.poll(() => page.locator(".log .entry.user").last().textContent()).toBe("question 40");
      const scroller = page.locator(".scroller");
      await expect.poll(() => scroller.evaluate((element) => element.scrollHeight > element.clientHeight)).toBe(true);
      for (let i = 0; i < 10 && (await page.locator('.log .entry[data-seq="1"]').count()) === 0; i++) {
        const firstSeq = await page.locator(".log .entry").first().getAttribute("data-seq");
        await scroller.evaluate((element) => {
          element.scrollTop = 0;
        });
        await expect.poll(async () => page.locator(".log .entry").first().getAttribute("data-seq")).not.toBe(firstSeq);
      }
      const users = await page.locator(".log .entry.user").allTextContents();
      expect(users).toEqual(Array.from({ length: 40 }, (_, i) => `question ${i + 1}`));
    } finally {
      await page.setViewportSize({ width: 1200, height: 800 });
    }
  });

  it("keeps the newest output in view while at the bottom, and leaves a reader who scrolled up where they are", async () => {
    const paragraphs = (n: number, word: string): string => Array.from({ length: n }, (_, i) => `${word} paragraph ${i + 1}.`).join("\n\n");
    // Taller than the viewport, yet one page of history (no paging back).
    await openWorkerWithHistory("Following", 8, (i) => paragraphs(6, `answer ${i}`));
    await expect.poll(() => page.locator(".log .entry.user").count()).toBe(8);
    const scroller = page.locator(".scroller");
    const position = (): Promise<{ top: number; fromBottom: number }> =>
      scroller.evaluate((element) => ({
        top: element.scrollTop,
        fromBottom: element.scrollHeight - element.scrollTop - element.clientHeight,
      }));
    expect(await scroller.evaluate((element) => element.scrollHeight > 2 * element.clientHeight)).toBe(true);
    await expect.poll(async () => (await position()).fromBottom).toBeLessThan(2);

    const streamed = async (question: string, answer: string): Promise<void> => {
      fake.enqueue(reply({ text: answer, pieceSize: 12 }, { delayMs: 15 }));
      await page.locator("textarea.input").fill(question);
      await page.keyboard.press("Enter");
      await expect.poll(() => page.locator(".log .entry.user").last().textContent(), { timeout: 20_000 }).toBe(question);
      await expect.poll(() => page.locator("button.stop").isHidden(), { timeout: 20_000 }).toBe(true);
      await expect.poll(async () => (await texts(page, ".log .entry.assistant")).at(-1), { timeout: 20_000 }).toContain("paragraph 8.");
    };

    // At the bottom, a streamed answer several screens tall keeps its newest line in view.
    await streamed("question 9", paragraphs(8, "answer 9"));
    await expect.poll(async () => (await position()).fromBottom).toBeLessThan(2);

    // Scrolled up, the reader stays where they are while the next answer streams.
    await scroller.evaluate((element) => {
      element.scrollTop = 300;
    });
    await expect.poll(async () => (await position()).top).toBe(300);
    await streamed("question 10", paragraphs(8, "answer 10"));
    const kept = await position();
    expect(kept.top).toBe(300);
    expect(kept.fromBottom).toBeGreaterThan(500);

    // Back at the bottom, it follows again.
    await scroller.evaluate((element) => {
      element.scrollTop = element.scrollHeight;
    });
    await streamed("question 11", paragraphs(8, "answer 11"));
    await expect.poll(async () => (await position()).fromBottom).toBeLessThan(2);
  });

  it("keeps a long chat's page bounded: the oldest entries leave the page as new ones arrive, and come back when scrolled to; reading back to the start, the newest leave and come back when scrolled down to; output that comes while the reader stands above the end waits below", async () => {
    const transport = createGrpcTransport({ baseUrl: `http://${server.h2c}` });
    const catalog = createClient(WorkerCatalog, transport);
    const interaction = createClient(WorkerInteraction, transport);
    const runtimeId = decodeURIComponent(/#\/w\/([^/]+)\//.exec(chatUrl)![1]!);
    const { worker } = await catalog.createWorker({
      runtimeId,
      displayName: "Long chat",
      profile: { source: { case: "builtin", value: "companion" } },
    });
    const ref = worker!.ref!;
    await page.goto(`${server.url}#/w/${encodeURIComponent(ref.runtimeId)}/${encodeURIComponent(ref.workerId)}`);
    await expect.poll(() => page.locator(".chat-header .status").textContent(), { timeout: 20_000 }).toContain("idle");
    // 120 rounds while the page follows along: 240 entries, past the page's bound (MAX_SHOWN in conversation.ts, 200).
    // They take 14-23 s on the idle 2-core VM and 40-60 s under a loaded CI run: hence its own 120 s.
    const rounds = 120;
    for (let i = 1; i <= rounds; i++) {
      fake.enqueue(reply({ text: `answer ${i}` }));
      for await (const message of interaction.streamInput({
        worker: ref,
        input: { text: `question ${i}` },
        busyPolicy: BusyPolicy.REJECT,
      })) {
        void message;
      }
    }
    await expect.poll(() => page.locator(".log .entry.assistant").last().textContent(), { timeout: 30_000 }).toContain(`answer ${rounds}`);
    // The page trims to its bound in the frame after an entry arrives (conversation.ts queueFrame), so the
    // newest entry can stand there one frame as the 201st: the bound is read once that frame has run.
    await expect.poll(() => page.locator(".log > *").count()).toBeLessThanOrEqual(200);
    const newest = Number(await page.locator(".log .entry").last().getAttribute("data-seq"));
    // Scrolled to the top, the entries that left come back, a page at a time.
    const firstSeq = Number(await page.locator(".log .entry").first().getAttribute("data-seq"));
    expect(firstSeq).toBeGreaterThan(1);
    await page.locator(".scroller").evaluate((element) => {
      element.scrollTop = 0;
    });
    await expect.poll(async () => Number(await page.locator(".log .entry").first().getAttribute("data-seq"))).toBeLessThan(firstSeq);

    // Read on up to the first entry: the page keeps a window of at most 200 around what is read, the newest
    // leaving as older pages come (the whole history stood in the page, 712 entries and ~250k nodes in the audit).
    const scrollTo = (where: "top" | "bottom") =>
      page.locator(".scroller").evaluate((element, top) => {
        element.scrollTop = top ? 0 : element.scrollHeight;
      }, where === "top");
    const firstShown = async () => Number(await page.locator(".log .entry").first().getAttribute("data-seq"));
    const lastShown = async () => Number(await page.locator(".log .entry").last().getAttribute("data-seq"));
    let most = 0;
    await expect
      .poll(
        async () => {
          most = Math.max(most, await page.locator(".log > *").count());
          await scrollTo("top");
          return firstShown();
        },
        { timeout: 60_000 },
      )
      .toBe(1);
    most = Math.max(most, await page.locator(".log > *").count());
    expect(most).toBeLessThanOrEqual(200);
    expect(await lastShown()).toBeLessThan(newest);
    // Back down, the newest entries come again.
    await expect
      .poll(
        async () => {
          most = Math.max(most, await page.locator(".log > *").count());
          await scrollTo("bottom");
          return lastShown();
        },
        { timeout: 60_000 },
      )
      .toBe(newest);
    expect(most).toBeLessThanOrEqual(200);

    // A reader a little above the end of a full page while a run answers: what comes waits below, not put in the page
    // past its bound (it grew by every entry for as long as they read there, 202 after one round in CI).
    await page.locator(".scroller").evaluate((element) => {
      element.scrollTop = element.scrollHeight - element.clientHeight - 400;
    });
    await page.evaluate(`(() => {
      const log = document.querySelector(".log");
      window.__mostInLog = log.children.length;
      new MutationObserver(() => {
        window.__mostInLog = Math.max(window.__mostInLog, log.children.length);
      }).observe(log, { childList: true });
    })()`);
    fake.enqueue(reply({ text: "answer while reading" }));
    for await (const message of interaction.streamInput({ worker: ref, input: { text: "one more" }, busyPolicy: BusyPolicy.REJECT })) {
      void message;
    }
    // The page got the round's first entry: put, it stands after the newest; held back, the streaming blocks are hidden.
    await expect.poll(async () => (await lastShown()) > newest || (await page.locator(".live").evaluate((live) => live.hidden))).toBe(true);
    expect(await page.evaluate("window.__mostInLog")).toBeLessThanOrEqual(200);
    expect(await lastShown()).toBe(newest);
    // Scrolled down to the end, they come, and the page follows the output once more.
    await expect
      .poll(async () => {
        await scrollTo("bottom");
        return page.locator(".log .entry.assistant").last().textContent();
      })
      .toContain("answer while reading");
    await scrollTo("bottom");
    fake.enqueue(reply({ text: "answer after the reading" }));
    for await (const message of interaction.streamInput({ worker: ref, input: { text: "two more" }, busyPolicy: BusyPolicy.REJECT })) {
      void message;
    }
    await expect
      .poll(() => page.locator(".log .entry.assistant").last().textContent(), { timeout: 30_000 })
      .toContain("answer after the reading");
    expect(await lastShown()).toBe(newest + 4);
    await expect.poll(() => page.locator(".log > *").count()).toBeLessThanOrEqual(200);
  }, 240_000);

  /** A worker of the "careful" profile (its tools need approval) on the chat's runtime, with fs.read on a workspace, opened in the page. */
  async function openCarefulWorker(displayName: string): Promise<WorkerRef> {
    const transport = createGrpcTransport({ baseUrl: `http://${server.h2c}` });
    const runtimeId = decodeURIComponent(/#\/w\/([^/]+)\//.exec(chatUrl)![1]!);
    const { worker } = await createClient(WorkerCatalog, transport).createWorker({
      runtimeId,
      displayName,
      profile: { source: { case: "builtin", value: "careful" } },
      capabilities: ["fs.read"],
      workspace: { root: "ws", path: "" },
    });
    const ref = worker!.ref!;
    await page.goto(`${server.url}#/w/${encodeURIComponent(ref.runtimeId)}/${encodeURIComponent(ref.workerId)}`);
    return ref;
  }

  it("approves a tool call from the page", async () => {
    const ref = await openCarefulWorker("Careful");
    // The answer after the approval is held at its start, so the run is seen running again before it ends.
    let answer: (() => void) | undefined;
    const answerHeld = new Promise<void>((resolve) => {
      answer = resolve;
    });
    fake.enqueue(
      reply({ toolCalls: [{ id: "call-1", name: "list_files", arguments: '{"path":"."}' }] }),
      reply({ text: "There is one file: notes.txt." }, { waitBefore: { 0: answerHeld } }),
    );
    try {
      const header = page.locator(".chat-header .status");
      // The sidebar's entry for this worker (the list polls; it has no run to watch).
      const listed = page.locator(".sidebar .worker", { has: page.locator("a", { hasText: /^Careful$/ }) }).locator(".worker-status");
      await page.locator("textarea.input").fill("What files are there?");
      await page.keyboard.press("Enter");
      await expect.poll(() => page.locator(".approval code").textContent(), { timeout: 20_000 }).toBe("list_files");
      // The header says what the run waits for, not "running" (the worker's own status) beside a panel that asks.
      await expect.poll(() => header.textContent()).toBe("waiting for approval");
      // So does the sidebar, in the same words (it said "running", the worker's own status, before ListWorkers told it more).
      await expect.poll(() => listed.textContent()).toBe("waiting for approval");
      // A screen reader is told, as it appears, that the run waits for the reader: it is a named live region.
      const pending = page.getByRole("region", { name: "Approval needed" });
      // Named as the worker is named (it said "The companion" for every worker).
      await expect(pending.textContent()).resolves.toMatch(/^Careful wants to run list_files:/);
      expect(await pending.getAttribute("aria-live")).toBe("assertive");
      await shot(page, "5-approval");
      // A message meanwhile is refused as busy: the reader is told the run waits for them, not that it is still answering.
      await page.locator("textarea.input").fill("Is that safe?");
      await page.keyboard.press("Enter");
      await expect
        .poll(() => page.locator(".chat .error").textContent())
        .toMatch(/^Not sent: the worker is waiting for you to approve or reject/);
      expect(await page.locator("textarea.input").inputValue()).toBe("Is that safe?");
      await page.getByRole("button", { name: "Approve" }).click();
      // Approved, the run runs again (the tool, then the model's answer, held here): so says the header.
      await expect.poll(() => header.textContent()).toBe("running");
      await expect.poll(() => listed.textContent()).toBe("running");
      answer?.();
      await expect.poll(() => texts(page, ".log .entry.assistant"), { timeout: 20_000 }).toEqual(["There is one file: notes.txt."]);
      await expect(page.locator(".log .entry.tool-result pre").textContent()).resolves.toContain("notes.txt");
      expect(await page.locator(".approval").isHidden()).toBe(true);
      await expect.poll(() => header.textContent()).toBe("idle");
      await expect.poll(() => listed.textContent()).toBe("idle");
      // The page sent the request id the CLI would for the same decision, so a retried click (or the
      // same decision from `worker-runtime approve`) is answered with the run, not refused as decided.
      const interaction = createClient(WorkerInteraction, createGrpcTransport({ baseUrl: `http://${server.h2c}` }));
      const { runs } = await interaction.listRuns({ worker: ref });
      expect(runs).toHaveLength(1);
      const { run } = await interaction.getRun({ worker: ref, runId: runs[0]!.runId });
      const requestId = decisionRequestId(ApprovalDecision.APPROVE, "call-1", "");
      expect(run?.resolvedApprovals).toEqual([expect.objectContaining({ requestId, toolCallId: "call-1", approved: true })]);
      // The page's request sent again (a retry after a dropped connection) is answered with the run, not refused as decided.
      const again = await interaction.resolveApproval({
        worker: ref,
        runId: runs[0]!.runId,
        toolCallId: "call-1",
        decision: ApprovalDecision.APPROVE,
        requestId,
      });
      expect(again.run?.runId).toBe(runs[0]!.runId);
    } finally {
      answer?.();
    }
  });

  it("names an unnamed worker by its id when it asks, and labels a rejected call as rejected, not failed", async () => {
    const { workerId } = await openCarefulWorker("");
    fake.enqueue(
      reply({ toolCalls: [{ id: "call-r", name: "list_files", arguments: '{"path":"."}' }] }),
      reply({ text: "Understood, I will not list them." }),
    );
    await page.locator("textarea.input").fill("What files are there?");
    await page.keyboard.press("Enter");
    const pending = page.getByRole("region", { name: "Approval needed" });
    await expect.poll(() => pending.textContent(), { timeout: 20_000 }).toMatch(new RegExp(`^${workerId} wants to run list_files:`));
    await pending.getByRole("button", { name: "Reject" }).click();
    await expect.poll(() => texts(page, ".log .entry.assistant"), { timeout: 20_000 }).toEqual(["Understood, I will not list them."]);
    const result = page.locator(".log .entry.tool-result");
    await expect(result.locator("summary").textContent()).resolves.toBe("Rejected list_files");
    expect(await result.getAttribute("class")).toContain("rejected");
    expect(await result.getAttribute("class")).not.toContain("failed");
  });

  it("says in plain words that a message is too long, with the limit, and keeps it in the box", async () => {
    // The chat open before also reads "idle": wait for the new companion's own chat first.
    const before = page.url();
    await page.getByRole("button", { name: "New companion" }).click();
    await page.waitForURL((url) => /#\/w\//.test(url.href) && url.href !== before, { timeout: 20_000 });
    await expect.poll(() => page.locator(".chat-header .status").textContent()).toBe("idle");
    const long = "a".repeat(300_000);
    await page.locator("textarea.input").fill(long);
    await page.keyboard.press("Enter");
    const error = page.locator(".chat .error");
    await expect.poll(() => error.textContent()).toMatch(/^Not sent: the message is too long\./);
    const said = (await error.textContent()) ?? "";
    expect(said).toContain("262,144");
    expect(said).not.toMatch(/input\.text|allowed$|bytes;/);
    expect(await page.locator("textarea.input").inputValue()).toBe(long);
    await page.locator("textarea.input").fill("");
  });

  it("keeps the next approval on screen when the answer to the one before arrives after it", async () => {
    await openCarefulWorker("Careful twice");
    fake.enqueue(
      reply({ toolCalls: [{ id: "call-a", name: "list_files", arguments: '{"path":"."}' }] }),
      reply({ toolCalls: [{ id: "call-b", name: "list_files", arguments: '{"path":"./"}' }] }),
      reply({ text: "Listed twice." }),
    );
    // The first approval's answer is held in the browser (the Backend has acted on it) until the second approval shows.
    let answerFirst: (() => void) | undefined;
    await page.route("**/ResolveApproval", async (route) => {
      if (answerFirst) return route.continue();
      const response = await route.fetch();
      await new Promise<void>((resolve) => {
        answerFirst = resolve;
      });
      await route.fulfill({ response });
    });
    try {
      await page.locator("textarea.input").fill("List the files twice");
      await page.keyboard.press("Enter");
      const pending = page.getByRole("region", { name: "Approval needed" });
      await expect.poll(() => page.locator(".approval pre").textContent(), { timeout: 20_000 }).toBe('{"path":"."}');
      await pending.getByRole("button", { name: "Approve" }).click();
      await expect.poll(() => page.locator(".approval pre").textContent(), { timeout: 20_000 }).toBe('{"path":"./"}');
      const answered = page.waitForEvent("requestfinished", {
        predicate: (request) => request.url().endsWith("/ResolveApproval"),
        timeout: 20_000,
      });
      answerFirst?.();
      await answered;
      // Two frames later the answer is long handled; the approval it was for is not the one on screen.
      await page.evaluate("new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)))");
      expect(await pending.isVisible()).toBe(true);
      await pending.getByRole("button", { name: "Approve" }).click();
      await expect.poll(() => texts(page, ".log .entry.assistant"), { timeout: 20_000 }).toEqual(["Listed twice."]);
      expect(await page.locator(".log .entry.tool-result").count()).toBe(2);
      expect(await page.locator(".approval").isHidden()).toBe(true);
    } finally {
      answerFirst?.();
      await page.unroute("**/ResolveApproval");
    }
  });

  it("resumes a reply across a dropped browser connection, losing and doubling nothing", async () => {
    const http1 = new URL(server.url).host;
    const proxy = await startCuttableProxy(http1);
    try {
      await page.goto(`${proxy.url}${new URL(chatUrl).hash}`);
      await expect.poll(() => page.locator(".log .entry.user").count()).toBe(2);
      const text = "Streaming on while the browser is away: every piece arrives exactly once, in order.";
      fake.enqueue(reply({ text, pieceSize: 2 }, { delayMs: 50 }));
      await page.locator("textarea.input").fill("Keep going");
      await page.keyboard.press("Enter");
      await expect
        .poll(async () => (await page.locator(".live .entry.assistant").textContent()) ?? "", { timeout: 20_000 })
        .toMatch(/Stre/);
      proxy.cut();
      await expect.poll(() => page.locator(".banner").isVisible(), { timeout: 20_000 }).toBe(true);
      await shot(page, "6-dropped-connection");
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      proxy.restore();
      await expect.poll(() => texts(page, ".log .entry.assistant"), { timeout: 30_000 }).toContain(text);
      await expect.poll(() => page.locator(".banner").isHidden()).toBe(true);
      expect(await page.locator(".live .entry").count()).toBe(0);
      expect((await texts(page, ".log .entry.assistant")).filter((shown) => shown === text)).toHaveLength(1);
      expect(await texts(page, ".log .entry.user")).toEqual(["Hi there", "Tell me a long story", "Keep going"]);
    } finally {
      await proxy.close();
    }
  });

  it("shows a reconnecting banner while the Backend is down, then resumes and answers", async () => {
    await page.goto(chatUrl);
    await expect.poll(() => page.locator(".log .entry.user").count()).toBe(3);
    const port = new URL(server.url).port;
    const grpcPort = server.h2c.split(":").pop()!;
    server.cli.kill();
    await server.cli.exited;
    await expect.poll(() => page.locator(".banner").isVisible(), { timeout: 20_000 }).toBe(true);
    await shot(page, "7-reconnecting");
    server = await startConsole(["--port", port, "--grpc-port", grpcPort, "--data-dir", dataDir, "--workspace-root", `ws=${workspace}`], {
      OPENAI_API_KEY: "test-key",
      OPENAI_BASE_URL: fake.baseURL,
    });
    processes.push(server);
    await expect.poll(() => page.locator(".banner").isHidden(), { timeout: 30_000 }).toBe(true);
    fake.enqueue(reply({ text: "Back again, and complete.", pieceSize: 3 }, { delayMs: 20 }));
    await page.locator("textarea.input").fill("Are you back?");
    await page.keyboard.press("Enter");
    await expect.poll(() => texts(page, ".log .entry.assistant"), { timeout: 20_000 }).toContain("Back again, and complete.");
    // Nothing lost, nothing doubled: each message once, in order.
    await expect
      .poll(() => page.locator(".log .entry.user").allTextContents())
      .toEqual(["Hi there", "Tell me a long story", "Keep going", "Are you back?"]);
    await shot(page, "8-resumed");
  });
});

describe("console with a remote runtime", () => {
  it("creates a companion on the ready remote runtime when the embedded one has no provider, and chats with it", async () => {
    // The model provider is set on the remote runtime only: the embedded one could not answer.
    const remote = startCli(["serve", "--port", "0", "--runtime-id", "rt-remote", "--data-dir", tempDir()], {
      OPENAI_API_KEY: "test-key",
      OPENAI_BASE_URL: fake.baseURL,
    });
    runtimes.push(remote);
    const { h2c } = await remote.listening;
    const config = join(tempDir(), "backend.json");
    writeFileSync(config, JSON.stringify({ runtimes: [{ id: "rt-remote", url: `http://${h2c}` }] }));
    const server = await start(["--data-dir", tempDir(), "--config", config], {});
    const page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
    await page.goto(server.url);
    await expect.poll(() => page.locator('.runtime[data-runtime="rt-remote"] .health.ready').count(), { timeout: 20_000 }).toBe(1);
    await expect.poll(() => page.locator(".runtime .tag").allTextContents()).toEqual(["embedded"]);
    await page.getByRole("button", { name: "New companion" }).click();
    await page.waitForURL(/#\/w\//, { timeout: 20_000 });
    const [runtimeId, workerId] = /#\/w\/([^/]+)\/([^/]+)$/.exec(page.url())!.slice(1).map(decodeURIComponent);
    expect(runtimeId).toBe("rt-remote");
    // The runtime itself holds the worker, and the Backend lists it there.
    const onRemote = await createClient(WorkerCatalog, createGrpcTransport({ baseUrl: `http://${h2c}` })).listWorkers({
      runtimeId: "rt-remote",
      pageSize: 100,
    });
    expect(onRemote.workers.map((worker) => worker.ref?.workerId)).toEqual([workerId]);
    const viaBackend = await createClient(WorkerCatalog, createGrpcTransport({ baseUrl: `http://${server.h2c}` })).listWorkers({
      pageSize: 100,
    });
    expect(viaBackend.workers.map((worker) => `${worker.ref?.runtimeId}/${worker.ref?.workerId}`)).toEqual([`rt-remote/${workerId}`]);
    await expect.poll(() => page.locator('.runtime[data-runtime="rt-remote"] .worker').count()).toBe(1);

    const text = "Answered by the remote runtime, streamed through the Backend.";
    fake.enqueue(reply({ text, pieceSize: 4 }, { delayMs: 20 }));
    await page.locator("textarea.input").fill("Who answers?");
    await page.keyboard.press("Enter");
    await expect.poll(() => texts(page, ".log .entry.assistant"), { timeout: 20_000 }).toEqual([text]);
    await expect(page.locator(".log .entry.user").textContent()).resolves.toBe("Who answers?");
    await shot(page, "10-remote-runtime");
    await page.close();
  });
});

describe("console with a remote runtime and a provider of its own", () => {
  it("creates the companion on the embedded runtime (SPEC §10), not on the ready remote one", async () => {
    const withProvider = { OPENAI_API_KEY: "test-key", OPENAI_BASE_URL: fake.baseURL };
    const remote = startCli(["serve", "--port", "0", "--runtime-id", "rt-remote", "--data-dir", tempDir()], withProvider);
    runtimes.push(remote);
    const { h2c } = await remote.listening;
    const config = join(tempDir(), "backend.json");
    writeFileSync(config, JSON.stringify({ runtimes: [{ id: "rt-remote", url: `http://${h2c}` }] }));
    const server = await start(["--data-dir", tempDir(), "--runtime-id", "rt-embedded", "--config", config], withProvider);
    const page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
    await page.goto(server.url);
    await expect.poll(() => page.locator('.runtime[data-runtime="rt-remote"] .health.ready').count(), { timeout: 20_000 }).toBe(1);
    await page.getByRole("button", { name: "New companion" }).click();
    await page.waitForURL(/#\/w\//, { timeout: 20_000 });
    const [runtimeId] = /#\/w\/([^/]+)\/([^/]+)$/.exec(page.url())!.slice(1).map(decodeURIComponent);
    expect(runtimeId).toBe("rt-embedded");
    const onRemote = await createClient(WorkerCatalog, createGrpcTransport({ baseUrl: `http://${h2c}` })).listWorkers({
      runtimeId: "rt-remote",
    });
    expect(onRemote.workers).toEqual([]);
    await page.close();
  });
});

describe("console without a model provider", () => {
  it("says what to set and refuses to send, visibly", async () => {
    const server = await start(["--data-dir", tempDir()], {});
    const page = await browser.newPage({ viewport: { width: 1200, height: 800 } });
    await page.goto(server.url);
    await page.getByRole("button", { name: "New companion" }).click();
    await expect.poll(() => page.locator(".not-connected").textContent(), { timeout: 20_000 }).toContain("OPENAI_API_KEY");
    await page.locator("textarea.input").fill("Hello?");
    await page.keyboard.press("Enter");
    await expect
      .poll(() => page.locator(".chat .error").textContent(), { timeout: 20_000 })
      .toMatch(/no model provider is connected.*OPENAI_API_KEY/);
    expect(await page.locator(".log .entry").count()).toBe(0);
    await shot(page, "9-not-connected");
    await page.close();
  });
});
