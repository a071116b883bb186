import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import type { Backend } from "../../src/backend/index.js";
import type { Runtime } from "../../src/runtime/index.js";
import type { BackendWithRemote } from "../support/backend-with-remote.js";
import type { FakeOpenAI } from "../support/fake-openai.js";
import { type Clients, eventually } from "../support/harness.js";
import { reply } from "../support/openai-chunks.js";
import { startSharedWatchSetup, useWatchReaders, workerWatchers } from "./shared-watch-setup.js";
import { WorkerWatchReader } from "./worker-watch-reader.js";

/**
 * WatchWorker through a Backend from a remote runtime (a real server on
 * 127.0.0.1 over HTTP/2) whose per-worker watcher limit is 2: every client
 * of one worker is served from ONE upstream watch the Backend keeps for it
 * (SPEC §9), so the runtime sees one watcher however many browsers watch,
 * and each client sees what a direct watcher sees: the same snapshot
 * (in-flight text included) and the same events, over gRPC (the undecoded
 * path), Connect JSON (decoded) and the console's Connect binary over
 * HTTP/1.1.
 */

let fake: FakeOpenAI;
let remote: Runtime;
let served: BackendWithRemote;
let backend: Backend;
let via: Record<"grpc" | "connect" | "console" | "direct", Clients>;
const watch = useWatchReaders(() => remote);

beforeAll(async () => {
  ({ fake, remote, served, backend, via } = await startSharedWatchSetup({ backend: { workerWatchLingerMs: 300 } }));
}, 60_000);

afterAll(async () => {
  await served?.close();
  await fake?.close();
});

async function newWorker(name: string): Promise<WorkerRef> {
  return (await via.grpc.catalog.createWorker({ runtimeId: "rs", displayName: name })).worker?.ref as WorkerRef;
}

/** A direct watch's first message, then the watch closed. */
async function directSnapshot(worker: WorkerRef) {
  const reader = new WorkerWatchReader(via.direct, worker);
  try {
    await eventually(() => reader.messages.length > 0 || reader.ended !== undefined, 10_000, "a direct snapshot");
    expect(reader.ended).toBeUndefined();
    return reader.messages[0]?.snapshot;
  } finally {
    reader.close();
  }
}

async function runEnded(worker: WorkerRef, runId: string): Promise<void> {
  await eventually(
    async () => ((await via.direct.interaction.getRun({ worker, runId })).run?.status ?? 0) >= RunStatus.COMPLETED,
    15_000,
    "the run to end",
  );
}

describe("WatchWorker through a Backend: one shared upstream per watched worker", () => {
  it("serves five clients of one worker from one upstream watch: each gets the snapshot, then the same events", async () => {
    const worker = await newWorker("five watchers");
    const clients = [via.grpc, via.grpc, via.connect, via.connect, via.console].map((from) => watch(from, worker));
    await eventually(() => clients.every((c) => c.messages.length > 0 || c.ended !== undefined), 10_000, "every snapshot");
    for (const client of clients) expect(client.ended).toBeUndefined();
    let most = workerWatchers(remote);
    const text = "a streamed answer, told to every watcher alike";
    fake.enqueue(reply({ text }, { delayMs: 5 }));
    const { run } = await via.grpc.interaction.sendInput({ worker, input: { text: "go" } });
    const runId = run?.runId ?? "";
    const sampling = setInterval(() => (most = Math.max(most, workerWatchers(remote))), 5);
    try {
      await runEnded(worker, runId);
      await eventually(() => clients.every((c) => c.view().runs.size === 0 && c.durable.length > 0), 10_000, "every client told the end");
    } finally {
      clearInterval(sampling);
    }
    expect(most, "watchers of the worker the runtime served").toBe(1);
    const first = clients[0] as WorkerWatchReader;
    expect(first.streamedText()).toBe(text);
    for (const client of clients) {
      expect(client.ended).toBeUndefined();
      expect(client.messages[0]?.snapshot?.worker?.ref).toEqual(worker);
      expect(client.events).toEqual(first.events);
    }
    // The runtime's limit has room for one more watcher: the Backend holds one.
    const direct = await directSnapshot(worker);
    expect(direct?.worker).toEqual(first.view().worker);
    expect(backend.workerWatch("rs", worker.workerId)?.readerCount).toBe(5);
  });

  it("gives a client joining mid-run the snapshot a direct watcher gets then, in-flight text included, and the same screen after", async () => {
    const worker = await newWorker("joined mid-run");
    const early = watch(via.grpc, worker);
    await eventually(() => early.messages.length > 0, 10_000, "the early snapshot");
    let release = () => {};
    const held = new Promise<void>((resolve) => (release = resolve));
    // Chunk 0 is the role, 1 the reasoning, then pieces of 4 characters: held after "partial " (chunks 2-3).
    fake.enqueue(reply({ reasoning: "hmm", text: "partial answer then the rest of it" }, { waitBefore: { 4: held } }));
    try {
      const { run } = await via.grpc.interaction.sendInput({ worker, input: { text: "go" } });
      await eventually(() => early.view().inFlight.some((b) => b.text === "partial "), 10_000, "the first text");
      const direct = await directSnapshot(worker);
      expect(direct?.inFlight.map((b) => b.text)).toEqual(["hmm", "partial "]);
      const joined = { grpc: watch(via.grpc, worker), connect: watch(via.connect, worker), console: watch(via.console, worker) };
      for (const [protocol, reader] of Object.entries(joined)) {
        await eventually(() => reader.messages.length > 0 || reader.ended !== undefined, 10_000, `${protocol} snapshot`);
        expect(reader.messages[0]?.snapshot, protocol).toEqual(direct);
      }
      release();
      await runEnded(worker, run?.runId ?? "");
      await eventually(() => early.view().runs.size === 0, 10_000, "the early watch told the end");
      for (const [protocol, reader] of Object.entries(joined)) {
        await eventually(() => reader.view().runs.size === 0, 10_000, `${protocol} told the end`);
        expect(reader.view(), protocol).toEqual(early.view());
        expect(reader.ended, protocol).toBeUndefined();
      }
      expect(early.streamedText()).toBe("partial answer then the rest of it");
      expect(joined.connect.streamedText()).toBe("partial answer then the rest of it");
    } finally {
      release();
    }
  });

  it("resumes a client by cursor from the shared watch: the snapshot, then every durable event after the cursor once, in order", async () => {
    const worker = await newWorker("resumed");
    const whole = watch(via.grpc, worker);
    await eventually(() => whole.messages.length > 0, 10_000, "a snapshot");
    for (const text of ["one", "two"]) {
      const { run } = await via.grpc.interaction.sendInput({ worker, input: { text } });
      await runEnded(worker, run?.runId ?? "");
    }
    await eventually(() => whole.view().runs.size === 0 && whole.view().worker?.activeRunId === "", 10_000, "both runs told");
    const durable = whole.durable;
    expect(durable.length).toBeGreaterThan(4);
    const served = backend.workerWatch("rs", worker.workerId);
    const before = served?.clientsServed ?? 0;
    for (const from of [via.grpc, via.connect]) {
      const at = 2;
      const resumed = watch(from, worker, durable[at]?.cursor);
      await eventually(() => resumed.durable.length >= durable.length - at - 1 || resumed.ended !== undefined, 10_000, "the replay");
      expect(resumed.ended).toBeUndefined();
      expect(resumed.messages[0]?.snapshot?.cursor).toBe(whole.lastCursor);
      expect(resumed.durable).toEqual(durable.slice(at + 1));
      // No live delta before the snapshot's point comes again: its text is in the snapshot already.
      expect(resumed.events.filter((e) => e.seq === 0n)).toEqual([]);
    }
    expect(served?.clientsServed).toBe(before + 2);
    expect(workerWatchers(remote)).toBe(1);
  });

  it("relays a client whose cursor the shared watch does not hold on its own stream, with the runtime's own answer", async () => {
    const worker = await newWorker("old cursor");
    const first = watch(via.grpc, worker);
    await eventually(() => first.messages.length > 0, 10_000, "a snapshot");
    const served = backend.workerWatch("rs", worker.workerId);
    const before = served?.clientsServed ?? 0;
    const malformed = watch(via.connect, worker, "not-a-cursor");
    await eventually(() => malformed.ended !== undefined, 10_000, "the runtime's answer");
    expect(malformed.ended).not.toBe("clean");
    const direct = new WorkerWatchReader(via.direct, worker, "not-a-cursor");
    await eventually(() => direct.ended !== undefined, 10_000, "the direct answer");
    expect((malformed.ended as Error).message).toBe((direct.ended as Error).message);
    expect(served?.clientsServed).toBe(before);
  });
});
