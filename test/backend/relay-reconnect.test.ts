import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import type { Http2SessionManager } from "@connectrpc/connect-node";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { isDeepStrictEqual } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RuntimeHealth } from "../../gen/worker_runtime/v1/backend_pb.js";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { WorkerStatus } from "../../gen/worker_runtime/v1/worker_pb.js";
import type { Backend } from "../../src/backend/index.js";
import { createRuntime, type Runtime, silentLogger } from "../../src/runtime/index.js";
import { startRuntimeServer } from "../../src/server/index.js";
import { type CuttableProxy, startCuttableProxy } from "../support/cuttable-proxy.js";
import { type FakeOpenAI, startFakeOpenAI } from "../support/fake-openai.js";
import { type BackendWithRemote, startBackendWithRemote } from "../support/backend-with-remote.js";
import type { WorkerEvent } from "../../gen/worker_runtime/v1/events_pb.js";
import { TERMINAL_RUN_STATUSES } from "../../src/runtime/in-flight.js";
import { type WorkerView, WorkerWatchReader } from "./worker-watch-reader.js";
import { type Clients, clientsAt, eventually, type Protocol, runToEnd } from "../support/harness.js";
import { reply, replyChunks } from "../support/openai-chunks.js";
import { damageFirstSegment } from "../support/damaged-segment.js";
import { createFileStoreRuntime } from "../support/file-store-runtime.js";

/**
 * A watch relayed by a Backend from a remote runtime (a real server on
 * 127.0.0.1, reached over HTTP/2 through a TCP proxy the test can cut)
 * while the Backend's upstream connection is down. The runtime goes on
 * meanwhile; what changed must reach the Backend's client once the relay
 * has resumed upstream, so that its view (its snapshot with every event
 * after it applied) is the view of a direct watch that was never cut, and
 * of a new watch's snapshot: a worker quarantined (FAILED, and the run it
 * had in flight ended: both told live only, never replayed by cursor),
 * output streamed while cut (live deltas, not replayed), a worker stopped
 * and its run cancelled (durable). Through gRPC (the relay's undecoded
 * path) and Connect JSON (its decoded path). Durable events still arrive
 * once each, in order, with cursors that only move forward.
 */

const HEARTBEAT_MS = 200;
const SEGMENT_BYTES = 300;

/**
 * A hook on the runtime's server (part of the harness, not of the Backend
 * under test): armed with a run id, it holds that run's next GetRun calls
 * until their callers give up (the Backend's deadline for that read), as a
 * runtime that is briefly unreachable or stalled does, and counts them.
 */
const getRunOutage = { runId: "", remaining: 0, failed: 0 };
const stalledGetRun: Interceptor = (next) => async (request) => {
  const message = request.message as { runId?: unknown };
  if (request.method.name === "GetRun" && getRunOutage.remaining > 0 && message.runId === getRunOutage.runId) {
    getRunOutage.remaining--;
    getRunOutage.failed++;
    await new Promise((resolve) => request.signal.addEventListener("abort", resolve, { once: true }));
    throw new ConnectError("the caller gave up", Code.DeadlineExceeded);
  }
  return next(request);
};

let dir: string;
let fake: FakeOpenAI;
let proxy: CuttableProxy;
let served: BackendWithRemote;
let backend: Backend;
let damaged: WorkerRef;
/** A second worker quarantined by its next run, for the GetRun outage. */
let damagedAgain: WorkerRef;
/** Sessions of the clients that populate the remote runtime before it is served behind the Backend. */
const sessions: Http2SessionManager[] = [];
const clients = {} as Record<"direct" | Protocol, Clients>;

/** The remote runtime "rs", on its file store in `dir` (opened again on each call: a restart). */
function remoteRuntime(): Promise<Runtime> {
  return createFileStoreRuntime({
    runtimeId: "rs",
    dir,
    providerBaseURL: fake.baseURL,
    heartbeatIntervalMs: HEARTBEAT_MS,
    segmentBytes: SEGMENT_BYTES,
  });
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "wr-relay-reconnect-"));
  fake = await startFakeOpenAI();
  fake.setFallback(reply({ text: "ok" }));
  // A worker with a history over several segments; then the first one damaged while the runtime is down.
  const first = await remoteRuntime();
  const firstServer = await startRuntimeServer({ runtime: first, host: "127.0.0.1", port: 0, logger: silentLogger });
  const setup = clientsAt(firstServer.h2Address, "grpc", sessions);
  damaged = (await setup.catalog.createWorker({ runtimeId: "rs", displayName: "damaged" })).worker?.ref as WorkerRef;
  for (let i = 0; i < 6; i++) await runToEnd(setup, damaged, `message ${i}`);
  damagedAgain = (await setup.catalog.createWorker({ runtimeId: "rs", displayName: "damaged again" })).worker?.ref as WorkerRef;
  for (let i = 0; i < 6; i++) await runToEnd(setup, damagedAgain, `message ${i}`);
  await firstServer.close(0);
  // A sealed segment is trusted at open: the damage is found by the next run's read of its history.
  await damageFirstSegment(path.join(dir, "rs", "workers", damaged.workerId));
  await damageFirstSegment(path.join(dir, "rs", "workers", damagedAgain.workerId));

  served = await startBackendWithRemote({
    remote: await remoteRuntime(),
    remoteServer: { interceptors: [stalledGetRun] },
    remoteUrl: async (address) => {
      proxy = await startCuttableProxy(address);
      return proxy.url.replace(/\/$/, "");
    },
    embedded: await createRuntime({ logger: silentLogger, runtimeId: "emb" }),
    backend: { heartbeatMs: HEARTBEAT_MS, backoff: { initialMs: 50, maxMs: 200 } },
  });
  backend = served.backend;
  clients.direct = served.remoteClients("grpc");
  clients.grpc = served.clients("grpc");
  clients.connect = served.clients("connect");
}, 60_000);

afterAll(async () => {
  for (const session of sessions.splice(0)) session.abort();
  await served?.close();
  await proxy?.close();
  await fake?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Watches `worker` directly (never cut) and through the Backend in both protocols. */
async function watchEverywhere(worker: WorkerRef): Promise<Record<"direct" | Protocol, WorkerWatchReader>> {
  const readers = {
    direct: new WorkerWatchReader(clients.direct, worker),
    grpc: new WorkerWatchReader(clients.grpc, worker),
    connect: new WorkerWatchReader(clients.connect, worker),
  };
  await eventually(() => Object.values(readers).every((r) => r.messages.length > 0), 10_000, "every snapshot");
  return readers;
}

/** Cuts the Backend's connection to the runtime, runs `meanwhile` on the runtime directly, then lets the Backend reconnect. */
async function whileCut(meanwhile: () => Promise<void>): Promise<void> {
  proxy.cut();
  try {
    await eventually(() => backend.directory.get("rs")?.health !== RuntimeHealth.READY, 10_000, "the Backend lost rs");
    await meanwhile();
  } finally {
    proxy.restore();
  }
  await eventually(() => backend.directory.get("rs")?.health === RuntimeHealth.READY, 10_000, "rs READY again");
}

/** A new direct watch's snapshot, as a view. */
async function freshView(worker: WorkerRef): Promise<WorkerView> {
  const reader = new WorkerWatchReader(clients.direct, worker);
  try {
    await eventually(() => reader.messages.length > 0, 10_000, "a fresh snapshot");
    return reader.view();
  } finally {
    reader.close();
  }
}

/** Every Backend watch comes to show what the uncut direct watch shows, and what a fresh snapshot shows. */
async function expectSameViews(readers: Record<"direct" | Protocol, WorkerWatchReader>, worker: WorkerRef, what: string): Promise<void> {
  const fresh = await freshView(worker);
  expect(readers.direct.view(), `${what}: the direct watch`).toEqual(fresh);
  for (const protocol of ["grpc", "connect"] as const) {
    const reader = readers[protocol];
    await eventually(
      () => reader.ended !== undefined || isDeepStrictEqual(reader.view(), fresh),
      10_000,
      `${what}: the Backend's ${protocol} watch showing what the runtime shows`,
    ).catch(() => {});
    expect(reader.ended, `${what}: ${protocol}`).toBeUndefined();
    expect(reader.view(), `${what}: the Backend's ${protocol} watch`).toEqual(fresh);
    reader.expectDurableInOrder(`${what}: ${protocol}`);
  }
}

describe("a watch relayed by a Backend whose upstream connection was cut", () => {
  it("shows a worker quarantined while cut FAILED, and the run it had in flight ended, as the runtime does", async () => {
    const readers = await watchEverywhere(damaged);
    try {
      for (const reader of Object.values(readers)) expect(reader.view().worker?.status).toBe(WorkerStatus.IDLE);
      let runId = "";
      await whileCut(async () => {
        // The run's read of the history finds the damage: the worker is quarantined, the run ends, both told live only.
        runId = (await clients.direct.interaction.sendInput({ worker: damaged, input: { text: "once more" } })).run?.runId ?? "";
        await eventually(async () => (await clients.direct.catalog.getWorker({ worker: damaged })).worker?.status === WorkerStatus.FAILED);
        await eventually(
          () => readers.direct.view().worker?.status === WorkerStatus.FAILED && readers.direct.view().runs.size === 0,
          10_000,
          "the direct watch told",
        );
      });
      const failed = (await clients.direct.catalog.getWorker({ worker: damaged })).worker;
      expect(failed?.failureMessage).toMatch(/damaged/);
      const ended = (await clients.direct.interaction.getRun({ worker: damaged, runId })).run;
      expect(TERMINAL_RUN_STATUSES.has(ended?.status ?? RunStatus.UNSPECIFIED)).toBe(true);
      await expectSameViews(readers, damaged, "quarantined while cut");
      // The Backend's clients were told with the live events a direct watch got: the run's end, then the worker FAILED
      // (the runtime tells FAILED twice, as the run's end and the worker's snapshot write each announce it; the relay once).
      const told = (events: WorkerEvent[]) =>
        [
          events.findLast((e) => e.kind.case === "runChanged" && e.kind.value.runId === runId),
          events.findLast((e) => e.kind.case === "workerChanged"),
        ].map((e) => ({ seq: e?.seq, cursor: e?.cursor, kind: e?.kind }));
      expect(told(readers.direct.events).map((e) => e.seq)).toEqual([0n, 0n]);
      for (const protocol of ["grpc", "connect"] as const) {
        const events = readers[protocol].events;
        expect(told(events), protocol).toEqual(told(readers.direct.events));
        expect(
          events.findIndex((e) => e.kind.case === "workerChanged" && e.kind.value.status === WorkerStatus.FAILED),
          protocol,
        ).toBeGreaterThan(
          events.findIndex(
            (e) => e.kind.case === "runChanged" && e.kind.value.runId === runId && TERMINAL_RUN_STATUSES.has(e.kind.value.status),
          ),
        );
      }
    } finally {
      for (const reader of Object.values(readers)) reader.close();
    }
  });

  it("reads the run a worker quarantined while cut ended again when that read fails: it resumes, never keeps the run open", async () => {
    const readers = await watchEverywhere(damagedAgain);
    try {
      await whileCut(async () => {
        const { run } = await clients.direct.interaction.sendInput({ worker: damagedAgain, input: { text: "once more" } });
        await eventually(
          async () => (await clients.direct.catalog.getWorker({ worker: damagedAgain })).worker?.status === WorkerStatus.FAILED,
        );
        await eventually(() => readers.direct.view().runs.size === 0, 10_000, "the direct watch told");
        // The Backend's reads of the run that ended unseen (one per relayed watch) time out once it is back.
        Object.assign(getRunOutage, { runId: run?.runId ?? "", remaining: 2, failed: 0 });
      });
      await eventually(() => getRunOutage.failed === 2, 10_000, "the Backend's reads of the run to stall");
      await expectSameViews(readers, damagedAgain, "the run's read failed after the cut");
    } finally {
      getRunOutage.remaining = 0;
      for (const reader of Object.values(readers)) reader.close();
    }
  });

  it("shows the output a run streamed while cut (reasoning, text, a tool call), then its end, as the runtime does", async () => {
    const worker = (await clients.direct.catalog.createWorker({ runtimeId: "rs", displayName: "streaming" })).worker?.ref as WorkerRef;
    let cutDone = () => {};
    let cutHeld = () => {};
    const cutOver = new Promise<void>((resolve) => (cutDone = resolve));
    const afterCut = new Promise<void>((resolve) => (cutHeld = resolve));
    // Chunk 0 is the role; then pieces of 4: the reasoning in 1-4, the text in 5-9, the tool call's id and name in 10
    // and its arguments in 11-15. Held mid-reasoning until the cut, and mid-arguments until the views are compared.
    const toolCalls = [{ id: "call-1", name: "read_file", arguments: '{"path":"notes.txt"}' }];
    fake.enqueue(
      reply({ reasoning: "thinking hard", text: "the answer is 42 ok", toolCalls }, { waitBefore: { 3: cutOver, 13: afterCut } }),
    );
    const readers = await watchEverywhere(worker);
    try {
      const requests = fake.requests.length;
      const { run } = await clients.direct.interaction.sendInput({ worker, input: { text: "think" } });
      await fake.waitForRequests(requests + 1);
      const shows = (reader: WorkerWatchReader, text: string) => reader.view().inFlight.some((block) => block.text === text);
      for (const reader of Object.values(readers)) await eventually(() => shows(reader, "thinking"), 10_000, "the first reasoning");
      await whileCut(async () => {
        // The rest of the reasoning, the text and the tool call's first arguments stream while the Backend is away.
        cutDone();
        await eventually(() => shows(readers.direct, '{"path":'), 10_000, "the direct watch streaming");
      });
      await expectSameViews(readers, worker, "streamed while cut");
      cutHeld();
      await eventually(
        async () => (await clients.direct.interaction.getRun({ worker, runId: run?.runId ?? "" })).run?.status === RunStatus.COMPLETED,
      );
      await eventually(() => readers.direct.view().runs.size === 0 && readers.direct.view().worker?.activeRunId === "", 10_000, "idle");
      await expectSameViews(readers, worker, "after the run ended");
    } finally {
      cutDone();
      cutHeld();
      for (const reader of Object.values(readers)) reader.close();
    }
  });

  it("shows a worker stopped while cut STOPPED, and its run cancelled, as the runtime does", async () => {
    const worker = (await clients.direct.catalog.createWorker({ runtimeId: "rs", displayName: "stopped" })).worker?.ref as WorkerRef;
    fake.enqueue({ kind: "stream", chunks: replyChunks({ text: "a partial answer" }), end: "hang" });
    const readers = await watchEverywhere(worker);
    try {
      const { run } = await clients.direct.interaction.sendInput({ worker, input: { text: "go on" } });
      for (const reader of Object.values(readers)) await eventually(() => reader.view().inFlight.length > 0, 10_000, "the run streaming");
      await whileCut(async () => {
        await clients.direct.catalog.stopWorker({ worker });
        await eventually(() => readers.direct.view().worker?.status === WorkerStatus.STOPPED, 10_000, "the direct watch told");
      });
      expect((await clients.direct.interaction.getRun({ worker, runId: run?.runId ?? "" })).run?.status).toBe(RunStatus.CANCELLED);
      await expectSameViews(readers, worker, "stopped while cut");
    } finally {
      for (const reader of Object.values(readers)) reader.close();
    }
  });

  it("opens a new WatchRuntime after the runtime restarted with the restarted runtime's summary, as a direct one does", async () => {
    const firstSnapshot = async (from: Clients) => {
      for await (const message of from.observation.watchRuntime({ runtimeId: "rs" })) return message.snapshot;
      return undefined;
    };
    const before = await firstSnapshot(clients.grpc);
    expect(before?.runtime?.startedAt).toBeDefined();
    const opens = backend.runtimeWatch("rs")?.upstreamOpens ?? 0;
    // The same runtime (its store) restarted on the same port, behind the same proxy.
    await served.restartRemote(remoteRuntime);
    await eventually(() => (backend.runtimeWatch("rs")?.upstreamOpens ?? 0) > opens, 10_000, "the shared watch resumed");
    await eventually(() => backend.directory.get("rs")?.health === RuntimeHealth.READY, 10_000, "rs READY again");
    const direct = await firstSnapshot(clients.direct);
    expect(direct?.runtime?.startedAt).not.toEqual(before?.runtime?.startedAt);
    let through: Awaited<ReturnType<typeof firstSnapshot>>;
    await eventually(
      async () => {
        through = await firstSnapshot(clients.grpc);
        return isDeepStrictEqual(through?.runtime?.startedAt, direct?.runtime?.startedAt);
      },
      10_000,
      "the Backend's new WatchRuntime showing the restarted runtime",
    ).catch(() => {});
    expect(through?.runtime, "a new WatchRuntime through the Backend").toEqual(direct?.runtime);
  });
});
