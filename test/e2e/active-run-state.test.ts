import { create } from "@bufbuild/protobuf";
import { mkdir, mkdtemp, realpath, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { ProfileSchema } from "../../gen/worker_runtime/v1/profile_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { ActiveRunState, type Worker } from "../../gen/worker_runtime/v1/worker_pb.js";
import { ApprovalDecision } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import { companionProfile, createOpenAIBackend } from "../../src/engine/index.js";
import { createFileStore } from "../../src/store/fs/index.js";
import { startFakeOpenAI, type FakeOpenAI } from "../support/fake-openai.js";
import { collectedStreams } from "../support/followed-stream.js";
import { eventually, PROTOCOLS, startHarness, type Clients, type Harness, type Protocol } from "../support/harness.js";
import { reply } from "../support/openai-chunks.js";

/**
 * Worker.active_run_state: while a worker's active run waits for a tool-call
 * approval, every place a Worker is read says so (GetWorker, ListWorkers,
 * WatchWorker's snapshot and worker-changed events, WatchRuntime's
 * worker-updated events), each change is announced to watchers, and it is
 * still so after a restart of a file-store runtime. Before the field, all of
 * them said only RUNNING, and the worker lists showed a blocked run as running.
 * The real engine against the fake provider, on the file store.
 */

const KEY = "sk-active-run-state-test";
const { UNSPECIFIED, RUNNING, AWAITING_APPROVAL } = ActiveRunState;
const writeCall = { toolCalls: [{ id: "w1", name: "write_file", arguments: JSON.stringify({ path: "a.txt", content: "A" }) }] };

describe.each(PROTOCOLS)("a worker whose run waits for approval (%s)", (protocol: Protocol) => {
  let fake: FakeOpenAI;
  let base: string;
  let harness: Harness | undefined;
  const streams = collectedStreams();

  beforeEach(async () => {
    fake = await startFakeOpenAI();
    base = await realpath(await mkdtemp(join(tmpdir(), "wr-active-run-state-")));
    await mkdir(join(base, "root"));
  });
  afterEach(async () => {
    streams.abortAll();
    await harness?.close();
    harness = undefined;
    await fake.close();
    await rm(base, { recursive: true, force: true });
  });

  /** Serves the data dir (again) with the real engine; "careful" asks before write_file. */
  async function serve(): Promise<Clients> {
    await harness?.close();
    const careful = create(ProfileSchema, { ...companionProfile("gpt-4o-mini"), name: "careful", approvalRequiredTools: ["write_file"] });
    harness = await startHarness({
      store: createFileStore({ dataDir: join(base, "data") }),
      executionBackend: createOpenAIBackend({ apiKey: KEY, baseURL: fake.baseURL, profiles: [careful] }),
      workspaceRoots: { work: join(base, "root") },
    });
    return harness.connect(protocol);
  }

  async function newWorker(clients: Clients): Promise<WorkerRef> {
    const { worker } = await clients.catalog.createWorker({
      runtimeId: harness?.runtime.runtimeId ?? "",
      capabilities: ["fs.write"],
      workspace: { root: "work", path: "ap" },
      profile: { source: { case: "builtin", value: "careful" } },
    });
    if (!worker?.ref) throw new Error("no worker");
    return worker.ref;
  }

  async function stateOf(clients: Clients, worker: WorkerRef): Promise<ActiveRunState | undefined> {
    return (await clients.catalog.getWorker({ worker })).worker?.activeRunState;
  }

  async function listedStateOf(clients: Clients, worker: WorkerRef): Promise<ActiveRunState | undefined> {
    const { workers } = await clients.catalog.listWorkers({ runtimeId: harness?.runtime.runtimeId ?? "" });
    return workers.find((w) => w.ref?.workerId === worker.workerId)?.activeRunState;
  }

  async function snapshotStateOf(clients: Clients, worker: WorkerRef): Promise<ActiveRunState | undefined> {
    const controller = new AbortController();
    try {
      for await (const message of clients.observation.watchWorker({ worker }, { signal: controller.signal })) {
        return message.snapshot?.worker?.activeRunState;
      }
    } finally {
      controller.abort();
    }
    return undefined;
  }

  /** The states a list of announced workers went through, repeats dropped. */
  function changes(workers: Worker[]): ActiveRunState[] {
    return workers.map((w) => w.activeRunState).filter((state, i, all) => i === 0 || state !== all[i - 1]);
  }

  async function waitForRunStatus(clients: Clients, worker: WorkerRef, runId: string, status: RunStatus): Promise<void> {
    await eventually(async () => (await clients.interaction.getRun({ worker, runId })).run?.status === status, 10_000, `run ${status}`);
  }

  it("is shown by GetWorker, ListWorkers and both watches while waiting, RUNNING after approval, UNSPECIFIED after the run", async () => {
    const clients = await serve();
    const worker = await newWorker(clients);
    expect(await stateOf(clients, worker)).toBe(UNSPECIFIED);
    const workerEvents = streams.collect((signal) => clients.observation.watchWorker({ worker }, { signal }));
    const runtimeEvents = streams.collect((signal) => clients.observation.watchRuntime({ runtimeId: worker.runtimeId }, { signal }));
    const announced = (): Worker[] =>
      workerEvents.flatMap((m) => m.events.flatMap((e) => (e.kind.case === "workerChanged" ? [e.kind.value] : [])));
    const published = (): Worker[] =>
      runtimeEvents.flatMap((m) =>
        m.events.flatMap((e) => (e.kind.case === "workerUpdated" && e.kind.value.ref?.workerId === worker.workerId ? [e.kind.value] : [])),
      );

    let release = (): void => {};
    const held = new Promise<void>((resolve) => (release = resolve));
    fake.enqueue(reply(writeCall), reply({ text: "wrote it" }, { waitBefore: { 0: held } }));
    const { run } = await clients.interaction.sendInput({ worker, input: { text: "write a" } });
    const runId = run?.runId ?? "";
    await waitForRunStatus(clients, worker, runId, RunStatus.AWAITING_APPROVAL);

    // Watchers hear of the wait without polling: a worker-changed / worker-updated event says it.
    await eventually(() => announced().at(-1)?.activeRunState === AWAITING_APPROVAL, 5_000, "worker-changed AWAITING_APPROVAL");
    await eventually(() => published().at(-1)?.activeRunState === AWAITING_APPROVAL, 5_000, "worker-updated AWAITING_APPROVAL");
    expect(await stateOf(clients, worker)).toBe(AWAITING_APPROVAL);
    expect(await listedStateOf(clients, worker)).toBe(AWAITING_APPROVAL);
    expect(await snapshotStateOf(clients, worker)).toBe(AWAITING_APPROVAL);

    await clients.interaction.resolveApproval({ worker, runId, toolCallId: "w1", decision: ApprovalDecision.APPROVE });
    // The run asks the model again and is held there: executing, not waiting.
    await fake.waitForRequests(2);
    expect(await stateOf(clients, worker)).toBe(RUNNING);
    expect(await listedStateOf(clients, worker)).toBe(RUNNING);
    await eventually(() => announced().at(-1)?.activeRunState === RUNNING, 5_000, "worker-changed RUNNING");
    expect(await snapshotStateOf(clients, worker)).toBe(RUNNING);

    release();
    await waitForRunStatus(clients, worker, runId, RunStatus.COMPLETED);
    await eventually(async () => (await stateOf(clients, worker)) === UNSPECIFIED, 5_000, "GetWorker UNSPECIFIED");
    expect(await listedStateOf(clients, worker)).toBe(UNSPECIFIED);
    await eventually(() => announced().at(-1)?.activeRunState === UNSPECIFIED, 5_000, "worker-changed UNSPECIFIED");
    await eventually(() => published().at(-1)?.activeRunState === UNSPECIFIED, 5_000, "worker-updated UNSPECIFIED");
    expect(await snapshotStateOf(clients, worker)).toBe(UNSPECIFIED);
    expect(changes(announced())).toEqual([RUNNING, AWAITING_APPROVAL, RUNNING, UNSPECIFIED]);
    expect(changes(published())).toEqual([RUNNING, AWAITING_APPROVAL, RUNNING, UNSPECIFIED]);
  });

  it("is still AWAITING_APPROVAL after a restart of the file-store runtime, and clears when the run ends", async () => {
    const first = await serve();
    const worker = await newWorker(first);
    fake.enqueue(reply(writeCall));
    const { run } = await first.interaction.sendInput({ worker, input: { text: "write a" } });
    const runId = run?.runId ?? "";
    await waitForRunStatus(first, worker, runId, RunStatus.AWAITING_APPROVAL);

    const clients = await serve();
    expect(await stateOf(clients, worker)).toBe(AWAITING_APPROVAL);
    expect(await listedStateOf(clients, worker)).toBe(AWAITING_APPROVAL);
    expect(await snapshotStateOf(clients, worker)).toBe(AWAITING_APPROVAL);

    fake.enqueue(reply({ text: "wrote it" }));
    await clients.interaction.resolveApproval({ worker, runId, toolCallId: "w1", decision: ApprovalDecision.APPROVE });
    await waitForRunStatus(clients, worker, runId, RunStatus.COMPLETED);
    await eventually(async () => (await stateOf(clients, worker)) === UNSPECIFIED, 5_000, "GetWorker UNSPECIFIED");
    // A snapshot is cut from what was delivered, which follows the durable writes.
    await eventually(async () => (await snapshotStateOf(clients, worker)) === UNSPECIFIED, 5_000, "snapshot UNSPECIFIED");
  });
});
