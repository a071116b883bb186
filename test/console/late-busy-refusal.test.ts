import { create, toBinary } from "@bufbuild/protobuf";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import type { Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BusyPolicy, type WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorDetailSchema, ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { WorkerInteraction } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import { reply } from "../support/openai-chunks.js";
import { type ConsoleWithProvider, startConsoleWithBrowser } from "./console-process.js";

/**
 * A busy refusal (WORKER_BUSY) whose answer reaches the page only after the
 * run it was about has ended: the chat cleared such a refusal when the run
 * ended, but one arriving after that stood under an idle header, telling the
 * reader to wait for an answer that was already there, until the next send.
 * Headless Chromium against `npm start`'s real Backend and the fake
 * provider; the refusal is the Backend's own, only held on its way to the
 * page (Chromium's request routing) until the run has ended.
 *
 * And the two ways a refusal was kept wrongly: one naming no run (a
 * runtime that does not say which) was dropped whenever the chat knew no
 * run in progress, though the server had just said one was; and one about
 * a run whose end came while another run was already in progress (queued
 * behind it) stood until that other run ended too.
 */

let server: ConsoleWithProvider;
let page: Page | undefined;

beforeAll(async () => {
  server = await startConsoleWithBrowser({ dataDirPrefix: "console-late-busy-" });
});

// Closing Chromium closes the page.
afterAll(async () => {
  await server?.close();
});

describe("a busy refusal that arrives after the run ended", () => {
  it("is not left on screen once no run is in progress", async () => {
    page = await server.browser.newPage({ viewport: { width: 1200, height: 800 } });
    await page.goto(server.url);
    await page.getByRole("button", { name: "New companion" }).click();
    await page.waitForURL(/#\/w\//, { timeout: 20_000 });
    const status = page.locator(".chat-header .status");
    await expect.poll(() => status.textContent(), { timeout: 20_000 }).toBe("idle");

    // The first answer holds mid-stream until the test lets it go on.
    let releaseAnswer!: () => void;
    const answerHeld = new Promise<void>((resolve) => {
      releaseAnswer = resolve;
    });
    server.fake.enqueue(reply({ text: "An answer held in the middle of its stream.", pieceSize: 6 }, { waitBefore: { 3: answerHeld } }));
    await page.locator("textarea.input").fill("first");
    await page.keyboard.press("Enter");
    await expect.poll(() => status.textContent(), { timeout: 20_000 }).toBe("running");

    // The second message's answer (the Backend's refusal) is held on its way to the page.
    let releaseRefusal!: () => void;
    const refusalHeld = new Promise<void>((resolve) => {
      releaseRefusal = resolve;
    });
    let refusedStatus: number | undefined;
    await page.route("**/worker_runtime.v1.WorkerInteraction/SendInput", async (route) => {
      const response = await route.fetch();
      refusedStatus = response.status();
      await refusalHeld;
      await route.fulfill({ response });
    });
    await page.locator("textarea.input").fill("second");
    await page.keyboard.press("Enter");
    await expect.poll(() => refusedStatus, { timeout: 20_000 }).toBeDefined();
    expect(refusedStatus).not.toBe(200);

    // The run ends; only then does the refusal reach the page.
    releaseAnswer();
    await expect.poll(() => page!.locator(".log .entry.assistant").count(), { timeout: 20_000 }).toBe(1);
    await expect.poll(() => status.textContent(), { timeout: 20_000 }).toBe("idle");
    releaseRefusal();
    // Send opens again once the refusal has been handled: the message was refused, so it stays in the box.
    await expect.poll(() => page!.getByRole("button", { name: "Send" }).isEnabled(), { timeout: 20_000 }).toBe(true);
    expect(await page.locator("textarea.input").inputValue()).toBe("second");
    // A frame for anything the chat did after handling it.
    await page.evaluate("new Promise((resolve) => requestAnimationFrame(resolve))");
    expect(await page.locator(".chat .error").isHidden(), (await page.locator(".chat .error").textContent()) ?? "").toBe(true);
  }, 120_000);
});

/** A new companion's chat in a new page, idle; its ref, read from the address. */
async function openCompanion(): Promise<{ page: Page; worker: WorkerRef }> {
  const opened = await server.browser.newPage({ viewport: { width: 1200, height: 800 } });
  await opened.goto(server.url);
  await opened.getByRole("button", { name: "New companion" }).click();
  await opened.waitForURL(/#\/w\//, { timeout: 20_000 });
  await expect.poll(() => opened.locator(".chat-header .status").textContent(), { timeout: 20_000 }).toBe("idle");
  const [runtimeId, workerId] = (new URL(opened.url()).hash.split("/").slice(2) as [string, string]).map(decodeURIComponent);
  return { page: opened, worker: { runtimeId, workerId } as WorkerRef };
}

/** The Backend's WorkerInteraction over gRPC, as another client of the same worker. */
const interaction = () => createClient(WorkerInteraction, createGrpcTransport({ baseUrl: `http://${server.h2c}` }));

/** A promise and the function that settles it. */
function gate(): { held: Promise<void>; release: () => void } {
  let release!: () => void;
  const held = new Promise<void>((resolve) => {
    release = resolve;
  });
  return { held, release };
}

describe("a busy refusal that names no run", () => {
  it("is shown though the chat knows no run in progress, and leaves once a run ends", async () => {
    const { page: chat, worker } = await openCompanion();
    const error = chat.locator(".chat .error");
    // A WORKER_BUSY without active_run_id, as a runtime that does not name the run answers (Connect's JSON error).
    const detail = Buffer.from(toBinary(ErrorDetailSchema, create(ErrorDetailSchema, { reason: ErrorReason.WORKER_BUSY }))).toString(
      "base64",
    );
    await chat.route("**/worker_runtime.v1.WorkerInteraction/SendInput", (route) =>
      route.fulfill({
        status: 400,
        contentType: "application/json",
        body: JSON.stringify({
          code: "failed_precondition",
          message: "the worker is busy",
          details: [{ type: "worker_runtime.v1.ErrorDetail", value: detail.replace(/=+$/, "") }],
        }),
      }),
    );
    await chat.locator("textarea.input").fill("Are you there?");
    await chat.keyboard.press("Enter");
    await expect.poll(() => error.isVisible(), { timeout: 20_000 }).toBe(true);
    expect(await error.textContent()).toMatch(/busy|answer/i);
    await chat.unroute("**/worker_runtime.v1.WorkerInteraction/SendInput");

    // A run (another client's) goes by: once it has ended, the refusal is no longer true.
    const answer = gate();
    server.fake.enqueue(reply({ text: "Another client's answer.", pieceSize: 6 }, { waitBefore: { 2: answer.held } }));
    await interaction().sendInput({ worker, input: { text: "from elsewhere" } });
    await expect.poll(() => chat.locator(".chat-header .status").textContent(), { timeout: 20_000 }).toBe("running");
    expect(await error.isVisible()).toBe(true);
    answer.release();
    await expect.poll(() => error.isHidden(), { timeout: 20_000 }).toBe(true);
    await chat.close();
  }, 120_000);
});

describe("a busy refusal whose run ends while another is in progress", () => {
  it("leaves when the run it names ends, not when the next one does", async () => {
    const { page: chat, worker } = await openCompanion();
    const status = chat.locator(".chat-header .status");
    const error = chat.locator(".chat .error");
    const first = gate();
    const queued = gate();
    server.fake.enqueue(
      reply({ text: "The first answer.", pieceSize: 6 }, { waitBefore: { 2: first.held } }),
      reply({ text: "The queued answer.", pieceSize: 6 }, { waitBefore: { 2: queued.held } }),
    );
    await chat.locator("textarea.input").fill("first");
    await chat.keyboard.press("Enter");
    await expect.poll(() => status.textContent(), { timeout: 20_000 }).toBe("running");
    await chat.locator("textarea.input").fill("second");
    await chat.keyboard.press("Enter");
    await expect.poll(() => error.isVisible(), { timeout: 20_000 }).toBe(true);

    // Another client queues a run behind the first: it is in progress as soon as the first ends.
    await interaction().sendInput({ worker, input: { text: "queued elsewhere" }, busyPolicy: BusyPolicy.ENQUEUE });
    first.release();
    await expect.poll(() => chat.locator(".log .entry.assistant").count(), { timeout: 20_000 }).toBe(1);
    // The refusal was about the first run, which has ended: it leaves while the queued one runs.
    await expect.poll(() => error.isHidden(), { timeout: 20_000 }).toBe(true);
    expect(await status.textContent()).toBe("running");
    queued.release();
    await expect.poll(() => status.textContent(), { timeout: 20_000 }).toBe("idle");
    await chat.close();
  }, 120_000);
});
