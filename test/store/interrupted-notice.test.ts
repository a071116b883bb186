import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { type TranscriptEntry, TranscriptEntrySchema, UserMessageSchema } from "../../gen/worker_runtime/v1/transcript_pb.js";
import { interruptedNotice } from "../../src/runtime/interrupted-notice.js";
import { createRuntime, type Runtime } from "../../src/runtime/index.js";
import { createFileStore } from "../../src/store/fs/index.js";
import { startCli } from "../support/cli-process.js";
import { type FakeOpenAI, startFakeOpenAI } from "../support/fake-openai.js";
import { type Clients, clientsAt, eventually } from "../support/harness.js";
import { startRestartableServe } from "../support/restartable-serve.js";
import type { Http2SessionManager } from "@connectrpc/connect-node";

/**
 * A run the runtime's stop cut off (kill -9, or a SIGTERM drain that
 * interrupts it) ends INTERRUPTED; a reader of the transcript (the CLI's
 * `transcript`, the console) must be told so in the transcript itself, as a
 * failed run's `run.failed` notice tells it, and exactly once, however many
 * times the runtime restarts before or after the notice is written.
 */
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const INTERRUPTED = "run.interrupted";

async function transcriptOf(clients: Clients, worker: WorkerRef | undefined): Promise<TranscriptEntry[]> {
  return (await clients.observation.readTranscript({ worker, position: { case: "afterSeq", value: 0n }, limit: 100 })).entries;
}

const interruptedNotices = (entries: TranscriptEntry[], runId: string): TranscriptEntry[] =>
  entries.filter((e) => e.runId === runId && e.content.case === "notice" && e.content.value.code === INTERRUPTED);

async function fakeProvider(): Promise<FakeOpenAI> {
  const fake = await startFakeOpenAI();
  cleanups.push(() => fake.close());
  fake.enqueue({ kind: "stall" });
  return fake;
}

/** A worker of `clients`' runtime with a run in flight: its input committed, its provider request made and stalled. */
async function runInFlight(
  clients: Clients,
  runtimeId: string,
  fake: FakeOpenAI,
): Promise<{ worker: WorkerRef | undefined; runId: string }> {
  const { worker } = await clients.catalog.createWorker({ runtimeId });
  const { run } = await clients.interaction.sendInput({ worker: worker?.ref, input: { text: "take your time" } });
  await eventually(() => fake.requests.length > 0, 10_000, "the provider request");
  await eventually(async () => (await transcriptOf(clients, worker?.ref)).length > 0, 10_000, "the committed input");
  return { worker: worker?.ref, runId: run?.runId ?? "" };
}

/** A `serve --data-dir` process SIGKILLed with a run in flight: its data dir, worker and run. */
async function killedMidRun(): Promise<{ dataDir: string; worker: WorkerRef | undefined; runId: string }> {
  const fake = await fakeProvider();
  const dataDir = await mkdtemp(path.join(tmpdir(), "wr-interrupted-notice-"));
  cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
  const sessions: Http2SessionManager[] = [];
  cleanups.push(() => {
    for (const session of sessions) session.abort();
  });
  const cli = startCli(["serve", "--port", "0", "--data-dir", dataDir], { OPENAI_API_KEY: "sk-test", OPENAI_BASE_URL: fake.baseURL });
  cleanups.push(() => cli.kill());
  const listening = await cli.listening;
  const { worker, runId } = await runInFlight(clientsAt(listening.h2c, "grpc", sessions), listening.runtimeId, fake);
  cli.child.kill("SIGKILL");
  await cli.exited;
  return { dataDir, worker, runId };
}

describe("a run the runtime's stop interrupted", () => {
  it("is told in the transcript by one run.interrupted notice after kill -9, and still one after another restart", async () => {
    const fake = await fakeProvider();
    const env = { OPENAI_API_KEY: "sk-test", OPENAI_BASE_URL: fake.baseURL };
    const { listening, before, restart } = await startRestartableServe([], env, cleanups);
    const { worker, runId } = await runInFlight(before, listening.runtimeId, fake);

    const { clients: after } = await restart();
    expect((await after.interaction.getRun({ worker, runId })).run?.status).toBe(RunStatus.INTERRUPTED);
    const entries = await transcriptOf(after, worker);
    const notices = interruptedNotices(entries, runId);
    expect(notices).toHaveLength(1);
    // After what the run committed (its input), as the run's last entry; the reader is told what was lost.
    expect(entries.at(-1)).toEqual(notices[0]);
    expect(entries.some((e) => e.runId === runId && e.content.case === "userMessage")).toBe(true);
    const notice = notices[0]?.content;
    expect(notice?.case === "notice" ? notice.value.message : "").toMatch(/runtime stopped before this run ended.*not kept/);

    const { clients: again } = await restart();
    expect(interruptedNotices(await transcriptOf(again, worker), runId)).toHaveLength(1);
    expect(await transcriptOf(again, worker)).toEqual(entries);
  }, 60_000);

  it("is told the same way when a SIGTERM drain interrupted it, and the restart adds no second notice", async () => {
    const fake = await fakeProvider();
    const env = { OPENAI_API_KEY: "sk-test", OPENAI_BASE_URL: fake.baseURL };
    const { listening, before, restart } = await startRestartableServe(["--shutdown-grace-ms", "100"], env, cleanups);
    const { worker, runId } = await runInFlight(before, listening.runtimeId, fake);

    const { clients: after } = await restart("SIGTERM");
    expect((await after.interaction.getRun({ worker, runId })).run?.status).toBe(RunStatus.INTERRUPTED);
    const entries = await transcriptOf(after, worker);
    const notices = interruptedNotices(entries, runId);
    expect(notices).toHaveLength(1);
    expect(entries.at(-1)).toEqual(notices[0]);
    const notice = notices[0]?.content;
    expect(notice?.case === "notice" ? notice.value.message : "").toMatch(/runtime shut down before this run ended/);

    const { clients: again } = await restart();
    expect(await transcriptOf(again, worker)).toEqual(entries);
  }, 60_000);

  it("is told once when a restart came after its notice was written but before its run was", async () => {
    const { dataDir, worker, runId } = await killedMidRun();

    // The restart writes the notice, but the run's log takes nothing (its records stay RUNNING on disk).
    let runsFail = true;
    const runsDir = `${path.sep}runs${path.sep}`;
    const faults = {
      beforeWrite: (file: string) => {
        if (runsFail && file.includes(runsDir)) throw Object.assign(new Error("fault: ENOSPC"), { code: "ENOSPC" });
      },
    };
    const open = async (): Promise<Runtime> => {
      const runtime = await createRuntime({ store: createFileStore({ dataDir, faults }), storeProbeIntervalMs: 60_000 });
      cleanups.push(() => runtime.close().catch(() => {}));
      return runtime;
    };
    const read = async (runtime: Runtime) =>
      (await runtime.readTranscript({ worker, position: { case: "afterSeq", value: 0n }, limit: 100 })).entries;
    const first = await open();
    expect(interruptedNotices(await read(first), runId)).toHaveLength(1);
    expect((await first.getRun({ worker, runId })).status).toBe(RunStatus.INTERRUPTED);
    await first.close().catch(() => {});

    runsFail = false;
    const second = await open();
    const entries = await read(second);
    expect(interruptedNotices(entries, runId)).toHaveLength(1);
    expect(entries.at(-1)?.content.case).toBe("notice");
    expect((await second.getRun({ worker, runId })).status).toBe(RunStatus.INTERRUPTED);
    await second.close();

    // Now that the run's end is on disk, a third start neither writes nor needs a notice.
    const third = await open();
    expect(await read(third)).toEqual(entries);
  }, 60_000);

  it("is told once when, its run's end still unwritten, later runs committed more entries than a short search reaches", async () => {
    const { dataDir, worker, runId } = await killedMidRun();
    const workerId = worker?.workerId ?? "";
    // What a restart that wrote the notice leaves when the run's INTERRUPTED record then failed, and later
    // runs committed 300 entries before the next stop: the run unfinished on disk, its notice 301 entries back
    // (further back than one read of the search goes).
    const raw = createFileStore({ dataDir });
    const stored = await raw.open({ generateRuntimeId: () => "unused" });
    const restored = stored.workers.find((w) => w.record.worker.ref?.workerId === workerId);
    expect(restored?.unfinishedRuns.map((run) => run.runId)).toContain(runId);
    let seq = restored?.lastTranscriptSeq ?? 0n;
    const entry = (run: string, content: TranscriptEntry["content"]): TranscriptEntry =>
      create(TranscriptEntrySchema, { seq: ++seq, runId: run, createdAt: timestampNow(), content });
    const notice = entry(runId, { case: "notice", value: interruptedNotice("restart") });
    const later = Array.from({ length: 300 }, (_, i) =>
      entry(`r-later-${Math.floor(i / 2)}`, { case: "userMessage", value: create(UserMessageSchema, { text: `later ${i}` }) }),
    );
    await raw.appendTranscript(workerId, [notice, ...later]);
    await raw.close();

    const runtime = await createRuntime({ store: createFileStore({ dataDir }), storeProbeIntervalMs: 60_000 });
    cleanups.push(() => runtime.close().catch(() => {}));
    const entries = (await runtime.readTranscript({ worker, position: { case: "afterSeq", value: 0n }, limit: 1000 })).entries;
    expect(interruptedNotices(entries, runId)).toHaveLength(1);
    expect(entries.at(-1)?.runId).toBe("r-later-149");
    expect((await runtime.getRun({ worker, runId })).status).toBe(RunStatus.INTERRUPTED);
  }, 60_000);

  it("is told once the disk takes writes again when the restart could write neither its notice nor its end", async () => {
    const { dataDir, worker, runId } = await killedMidRun();
    let full = true;
    // Room for the data dir's lock and no more: without it start-up is refused (lock-full-disk.test.ts).
    const faults = {
      beforeWrite: (file: string) => {
        if (full && !file.startsWith("LOCK.")) throw Object.assign(new Error("fault: ENOSPC"), { code: "ENOSPC" });
      },
    };
    const open = async (probeMs: number): Promise<Runtime> => {
      const runtime = await createRuntime({ store: createFileStore({ dataDir, faults }), storeProbeIntervalMs: probeMs });
      cleanups.push(() => runtime.close().catch(() => {}));
      return runtime;
    };
    const read = async (runtime: Runtime) =>
      (await runtime.readTranscript({ worker, position: { case: "afterSeq", value: 0n }, limit: 100 })).entries;
    const first = await open(50);
    expect(interruptedNotices(await read(first), runId)).toHaveLength(0);
    // Reads show the run ended all the same (its record is held back until the notice is written).
    expect((await first.getRun({ worker, runId })).status).toBe(RunStatus.INTERRUPTED);

    full = false;
    await eventually(async () => interruptedNotices(await read(first), runId).length === 1, 5_000, "the notice once the disk writes");
    await first.close();
    // The run's end is on disk now, written by this start after its notice (reads above answer from the held
    // version, so only the store itself can tell): the next start finds the run ended, not unfinished.
    const raw = createFileStore({ dataDir });
    const stored = await raw.open({ generateRuntimeId: () => "unused" });
    const restored = stored.workers.find((w) => w.record.worker.ref?.workerId === worker?.workerId);
    expect(restored?.unfinishedRuns.map((run) => run.runId)).not.toContain(runId);
    await raw.close();

    const second = await open(60_000);
    const entries = await read(second);
    expect(interruptedNotices(entries, runId)).toHaveLength(1);
    expect(entries.at(-1)?.content.case).toBe("notice");
    expect((await second.getRun({ worker, runId })).status).toBe(RunStatus.INTERRUPTED);
  }, 60_000);
});
