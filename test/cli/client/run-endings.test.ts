import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startFakeOpenAI } from "../../support/fake-openai.js";
import { RunStatus } from "../../../gen/worker_runtime/v1/run_pb.js";
import { errorReply, reply, replyChunks } from "../../support/openai-chunks.js";
import { eventually } from "../../support/harness.js";
import { jsonLines, runClient, serveRuntime, startClient, type ServedRuntime } from "./client-support.js";

/**
 * How the client shows a run that did not complete: `send` prints a failed
 * run's error once, with its reason (the run's end, the failure notice and
 * the closing summary each used to print it); `transcript` marks the
 * partial answer of a cancelled run as stopped, from the run's recorded
 * status, so it does not read like a complete one.
 */

let rt: ServedRuntime;

beforeAll(async () => {
  rt = await serveRuntime({ runtimeId: "rt-endings" });
});

afterAll(async () => {
  await rt?.close();
});

const cli = (...args: string[]) => runClient(args, { server: rt.url });

async function createWorker(): Promise<string> {
  const created = await cli("workers", "create", "--profile", "companion");
  expect(created.code).toBe(0);
  return created.stdout.trim();
}

/** How many times `needle` occurs in `text`. */
function occurrences(text: string, needle: string): number {
  return text.split(needle).length - 1;
}

describe("send: a failed run's error", () => {
  it("is printed once, on stderr, with its reason; exit 9", async () => {
    const worker = await createWorker();
    // A 400 is not retried: the run fails with the provider's words.
    rt.fake.enqueue(errorReply(400, "the fake provider refuses this request"));
    const result = await cli("send", worker, "hi");
    expect(result.code).toBe(9);
    expect(occurrences(result.stdout + result.stderr, "the fake provider refuses this request")).toBe(1);
    expect(result.stderr).toMatch(/^worker-runtime: run \S+ FAILED: .*the fake provider refuses this request.* \(reason: [A-Z_]+\)\n$/);
    // stdout still says how the run ended, as it does for a cancelled one.
    expect(result.stdout).toMatch(/^\[run \S+ FAILED\]\n$/);
  });

  it("watch shows it once too, on the run's end line", async () => {
    const worker = await createWorker();
    rt.fake.enqueue(errorReply(400, "watched refusal"));
    const watching = startClient(["watch", worker], { server: rt.url });
    try {
      await eventually(() => watching.stdout().includes("IDLE"), 30_000, "the snapshot");
      expect((await cli("send", worker, "hi")).code).toBe(9);
      await eventually(() => watching.stdout().includes("FAILED"), 30_000, "the failed run");
      // The worker's status line comes after the run's end; by then every line of the run is out.
      await eventually(() => /FAILED[\s\S]*IDLE/.test(watching.stdout()), 30_000, "the worker idle again");
      expect(occurrences(watching.stdout(), "watched refusal")).toBe(1);
      expect(watching.stdout()).toMatch(/\[run \S+ FAILED: .*watched refusal.* \(reason: [A-Z_]+\)\]/);
    } finally {
      watching.child.kill("SIGINT");
      await watching.exited;
    }
  }, 120_000);
});

describe("send: a run the runtime's shutdown interrupted", () => {
  it("says the runtime stopped before the run ended, not 'no detail'; exit 9", async () => {
    const own = await serveRuntime({ runtimeId: "rt-interrupted" });
    try {
      const worker = (await runClient(["workers", "create", "--profile", "companion"], { server: own.url })).stdout.trim();
      own.fake.enqueue({ kind: "stream", chunks: replyChunks({ text: "Cut sho" }).slice(0, -1), delayMs: 20, end: "hang" });
      const sending = startClient(["send", worker, "hi"], { server: own.url });
      await eventually(() => sending.stdout().includes("Cut sho"), 30_000, "the partial text");
      // A drain of 200 ms (serveRuntime's --shutdown-grace-ms): the run is interrupted, then the process exits.
      own.process.child.kill("SIGTERM");
      const { code } = await sending.exited;
      expect(sending.stderr()).toMatch(
        /^worker-runtime: run \S+ INTERRUPTED: the runtime stopped before the run ended \(shut down or restarted\)\n$/,
      );
      expect(code).toBe(9);
      // Told once: the closing line, not also the run.interrupted notice the runtime commits to the transcript.
      expect(sending.stdout()).not.toContain("run.interrupted");
    } finally {
      await own.close();
    }
  }, 120_000);
});

describe("transcript: a run the runtime's shutdown interrupted", () => {
  it("shows the run.interrupted notice after the partial answer as the run's end, not a second [stopped] line", async () => {
    const dataDir = mkdtempSync(path.join(tmpdir(), "wr-cli-interrupted-"));
    const fake = await startFakeOpenAI();
    try {
      const first = await serveRuntime({ runtimeId: "rt-drained", dataDir, fake });
      const worker = (await runClient(["workers", "create", "--profile", "companion"], { server: first.url })).stdout.trim();
      fake.enqueue({ kind: "stream", chunks: replyChunks({ text: "Cut sho" }).slice(0, -1), delayMs: 20, end: "hang" });
      const sending = startClient(["send", worker, "hi"], { server: first.url });
      await eventually(() => sending.stdout().includes("Cut sho"), 30_000, "the partial text");
      first.process.child.kill("SIGTERM");
      await sending.exited;
      await first.process.exited;
      await first.close();

      const second = await serveRuntime({ runtimeId: "rt-drained", dataDir, fake });
      try {
        const text = await runClient(["transcript", worker], { server: second.url });
        expect(text).toMatchObject({ code: 0, stderr: "" });
        expect(text.stdout).toBe(
          "> hi\nCut sho\n! run.interrupted: the runtime shut down before this run ended; what the run had written so far is kept\n",
        );
        const json = jsonLines((await runClient(["transcript", worker, "--output", "json"], { server: second.url })).stdout);
        expect(json.map((entry) => entry.stopped)).toEqual([undefined, undefined, "interrupted"]);
        expect(json[2]).toMatchObject({ notice: { code: "run.interrupted" } });
      } finally {
        await second.close();
      }
    } finally {
      await fake.close();
      rmSync(dataDir, { recursive: true, force: true });
    }
  }, 120_000);
});

describe("transcript: a cancelled run's partial answer", () => {
  it("is marked [stopped: cancelled] after it, and carries stopped in JSON; a complete answer is not marked", async () => {
    const worker = await createWorker();
    const ref = { runtimeId: rt.runtimeId, workerId: worker };
    rt.fake.enqueue(reply({ text: "A whole answer." }));
    expect((await cli("send", worker, "first")).code).toBe(0);
    // Slow pieces, then the provider never finishes: cancelled mid-stream.
    rt.fake.enqueue({ kind: "stream", chunks: replyChunks({ text: "Half an ans" }).slice(0, -1), delayMs: 20, end: "hang" });
    const sending = startClient(["send", worker, "second"], { server: rt.url });
    await eventually(() => sending.stdout().includes("Half an ans"), 30_000, "the partial text");
    const { worker: busy } = await rt.clients.catalog.getWorker({ worker: ref });
    const runId = busy?.activeRunId ?? "";
    expect((await cli("cancel", worker, runId)).code).toBe(0);
    expect(await sending.exited).toEqual({ code: 130, signal: null });
    expect((await rt.clients.interaction.getRun({ worker: ref, runId })).run?.status).toBe(RunStatus.CANCELLED);

    const text = await cli("transcript", worker);
    expect(text).toMatchObject({ code: 0, stderr: "" });
    expect(text.stdout).toBe("> first\nA whole answer.\n> second\nHalf an ans\n[stopped: cancelled]\n");
    const tail = await cli("transcript", worker, "--tail", "1");
    expect(tail.stdout).toBe("Half an ans\n[stopped: cancelled]\n");
    const before = await cli("transcript", worker, "--tail", "3");
    expect(before.stdout).toBe("A whole answer.\n> second\nHalf an ans\n[stopped: cancelled]\n");

    const json = jsonLines((await cli("transcript", worker, "--output", "json")).stdout);
    expect(json.map((entry) => entry.stopped)).toEqual([undefined, undefined, undefined, "cancelled"]);
    expect(json[3]).toMatchObject({ runId, assistantMessage: { text: "Half an ans" } });
    // Eight CLI processes from source: over 60 s on a machine shared with other test runs.
  }, 180_000);
});
