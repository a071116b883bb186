import { Code, ConnectError } from "@connectrpc/connect";
import type { Http2SessionManager } from "@connectrpc/connect-node";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorDetailSchema, ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import type { WorkerEvent } from "../../gen/worker_runtime/v1/events_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import type { WatchWorkerResponse } from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import { type Worker, WorkerStatus } from "../../gen/worker_runtime/v1/worker_pb.js";
import { type Runtime, silentLogger } from "../../src/runtime/index.js";
import { type RuntimeServer, startRuntimeServer } from "../../src/server/index.js";
import { type FakeOpenAI, startFakeOpenAI } from "../support/fake-openai.js";
import { type BackendWithRemote, startBackendWithRemote } from "../support/backend-with-remote.js";
import { type Clients, clientsAt, eventually } from "../support/harness.js";
import { cursorAt } from "../support/cursors.js";
import { replyChunks } from "../support/openai-chunks.js";
import { damageFirstSegment } from "../support/damaged-segment.js";
import { createFileStoreRuntime } from "../support/file-store-runtime.js";

/**
 * What a user of the Backend sees of a worker that has ended, FAILED or
 * STOPPED, must be what the worker's runtime shows a client that calls it
 * directly: from a remote runtime (a real server on 127.0.0.1 reached over
 * HTTP/2) and from the embedded one. A worker becomes FAILED in the two
 * real ways: its stored state is found damaged at start-up, or a read finds
 * damage while it is served (both quarantine it, file store). Through the
 * Backend every view is compared with the direct one: GetWorker and
 * ListWorkers, SendInput's and StreamInput's typed rejection (code, reason,
 * metadata, message), ReadTranscript of the damaged history, a watch open
 * when the worker ends (the change arrives, the stream goes on with
 * heartbeats as a direct one does) and a new watch's snapshot. Through gRPC,
 * Connect JSON (the relay's decoded path) and the console's own transport
 * (Connect, binary, over the HTTP/1.1 port).
 */

const HEARTBEAT_MS = 200;
/** Small segments, so a worker's first transcript segment is sealed (and read only on demand). */
const SEGMENT_BYTES = 300;

type Route = "direct" | "backend grpc" | "backend connect" | "console";

interface Side {
  runtimeId: string;
  /** The worker whose history a read finds damaged while it is watched. */
  late: WorkerRef;
  /** The worker whose snapshot was damaged while the runtime was down. */
  early: WorkerRef;
  /** The worker stopped through the Backend while it is watched. */
  stopped: WorkerRef;
  /** Clients by route: direct to the runtime's own server, or through the Backend. */
  clients: Record<Route, Clients>;
}

let dir: string;
let fake: FakeOpenAI;
let served: BackendWithRemote;
/** The embedded runtime's own routes on a server of their own: how it answers a client directly. */
let embeddedServer: RuntimeServer;
/** Sessions of the clients this file makes itself: populating, and direct to the embedded runtime. */
const sessions: Http2SessionManager[] = [];
const sides: Side[] = [];

/** The runtime `runtimeId` on its file store in `dir` (opened again on each call: a restart). */
function fileRuntime(runtimeId: string): Promise<Runtime> {
  return createFileStoreRuntime({
    runtimeId,
    dir,
    providerBaseURL: fake.baseURL,
    heartbeatIntervalMs: HEARTBEAT_MS,
    segmentBytes: SEGMENT_BYTES,
  });
}

/** The three workers, "late" with a few answered inputs (history over several segments); then the runtime closed. */
async function populate(runtimeId: string): Promise<{ late: WorkerRef; early: WorkerRef; stopped: WorkerRef }> {
  const runtime = await fileRuntime(runtimeId);
  const server = await startRuntimeServer({ runtime, host: "127.0.0.1", port: 0, logger: silentLogger });
  const clients = clientsAt(server.h2Address, "grpc", sessions);
  const refs: WorkerRef[] = [];
  for (const name of ["late", "early", "stopped"]) {
    const worker = (await clients.catalog.createWorker({ runtimeId, displayName: name })).worker?.ref as WorkerRef;
    refs.push(worker);
    for (let i = 0; i < (name === "late" ? 6 : 1); i++) {
      const { run } = await clients.interaction.sendInput({ worker, input: { text: `message ${i}` } });
      const runId = run?.runId ?? "";
      await eventually(async () => (await clients.interaction.getRun({ worker, runId })).run?.status === RunStatus.COMPLETED);
    }
  }
  await server.close(0);
  const [late, early, stopped] = refs as [WorkerRef, WorkerRef, WorkerRef];
  const workerDir = (ref: WorkerRef) => path.join(dir, runtimeId, "workers", ref.workerId);
  // A sealed segment is trusted at open: the damage is found by the first read of it.
  await damageFirstSegment(workerDir(late));
  // A snapshot that is not one quarantines its worker at start-up.
  await writeFile(path.join(workerDir(early), "worker.snapshot"), "not a snapshot");
  return { late, early, stopped };
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "wr-ended-worker-"));
  fake = await startFakeOpenAI();
  fake.setFallback({ kind: "stream", chunks: replyChunks({ text: "ok", usage: { prompt: 1, completion: 1 } }) });
  const remoteWorkers = await populate("rs");
  const embeddedWorkers = await populate("emb");

  const remote = await fileRuntime("rs");
  const embedded = await fileRuntime("emb");
  served = await startBackendWithRemote({ remote, embedded });
  embeddedServer = await startRuntimeServer({ runtime: embedded, host: "127.0.0.1", port: 0, logger: silentLogger });
  const throughBackend = {
    "backend grpc": served.clients("grpc"),
    "backend connect": served.clients("connect"),
    console: served.consoleClients(),
  };
  sides.push(
    { runtimeId: "rs", ...remoteWorkers, clients: { direct: served.remoteClients("grpc"), ...throughBackend } },
    { runtimeId: "emb", ...embeddedWorkers, clients: { direct: clientsAt(embeddedServer.h2Address, "grpc", sessions), ...throughBackend } },
  );
}, 60_000);

afterAll(async () => {
  for (const session of sessions.splice(0)) session.abort();
  await served?.close();
  await embeddedServer?.close(0);
  await fake?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** A watch read in the background: every message kept, and how it ended. */
class WatchReader {
  readonly messages: WatchWorkerResponse[] = [];
  ended: string | undefined;
  private readonly controller = new AbortController();

  constructor(clients: Clients, worker: WorkerRef) {
    void (async () => {
      try {
        for await (const message of clients.observation.watchWorker({ worker }, { signal: this.controller.signal }))
          this.messages.push(message);
        this.ended = "ended cleanly";
      } catch (error) {
        this.ended = this.controller.signal.aborted ? "aborted" : `failed: ${ConnectError.from(error).message}`;
      }
    })();
  }

  /** The first snapshot, once it has come. */
  async snapshot() {
    await eventually(() => this.messages.length > 0 || this.ended !== undefined, 10_000, "the first message");
    return this.messages[0]?.snapshot;
  }

  /** The events received so far. */
  get events(): WorkerEvent[] {
    return this.messages.flatMap((message) => message.events);
  }

  /** Waits for a heartbeat after the message at `index`; fails if the stream ended first. */
  async heartbeatAfter(index: number): Promise<string> {
    await eventually(() => this.messages.slice(index).some((m) => m.heartbeat) || this.ended !== undefined, 10_000, "a heartbeat");
    if (this.ended !== undefined) throw new Error(`the watch ended: ${this.ended}`);
    return this.messages.slice(index).find((m) => m.heartbeat)?.heartbeat?.cursor ?? "";
  }

  close(): void {
    this.controller.abort();
  }
}

/** A WatchRuntime read in the background, for the workerUpdated events it carries. */
function runtimeWatchOf(side: Side, route: Route) {
  const controller = new AbortController();
  const updates: Worker[] = [];
  let first: () => void = () => {};
  const opened = new Promise<void>((resolve) => {
    first = resolve;
  });
  void (async () => {
    for await (const message of side.clients[route].observation.watchRuntime(
      { runtimeId: side.runtimeId },
      { signal: controller.signal },
    )) {
      first();
      for (const event of message.events) if (event.kind.case === "workerUpdated") updates.push(event.kind.value);
    }
  })().catch(() => {});
  return {
    opened,
    async updateTo(worker: WorkerRef, status: WorkerStatus): Promise<Worker | undefined> {
      const find = () => updates.find((w) => w.ref?.workerId === worker.workerId && w.status === status);
      await eventually(() => find() !== undefined, 10_000, `${side.runtimeId} ${route} WatchRuntime workerUpdated`);
      return find();
    },
    close: () => controller.abort(),
  };
}

/** The workerChanged event a watch got with `status`, once it has come. */
async function changeTo(reader: WatchReader, status: WorkerStatus, what: string): Promise<{ worker: Worker; index: number }> {
  const find = () => reader.events.find((e) => e.kind.case === "workerChanged" && e.kind.value.status === status);
  await eventually(() => find() !== undefined || reader.ended !== undefined, 10_000, what).catch(() => {});
  const event = find();
  if (event?.kind.case !== "workerChanged")
    throw new Error(`${what}: no workerChanged to ${WorkerStatus[status]} (ended: ${reader.ended})`);
  const index = reader.messages.findIndex((m) => m.events.includes(event));
  return { worker: event.kind.value, index };
}

/** How a call was refused, as a client can compare it. */
async function refusal(call: () => Promise<unknown>) {
  try {
    await call();
  } catch (error) {
    const e = ConnectError.from(error);
    const detail = e.findDetails(ErrorDetailSchema)[0];
    return {
      code: Code[e.code],
      reason: detail ? ErrorReason[detail.reason] : undefined,
      metadata: detail?.metadata,
      message: e.rawMessage,
    };
  }
  return "no error";
}

const firstStreamInput = (clients: Clients, worker: WorkerRef) => () =>
  clients.interaction
    .streamInput({ worker, input: { text: "more" } })
    [Symbol.asyncIterator]()
    .next();

/** Every Backend route gives the direct refusal of SendInput and StreamInput, which has `code` and `reason`. */
async function expectSameRefusals(side: Side, worker: WorkerRef, code: Code, reason: ErrorReason): Promise<void> {
  for (const [call, label] of [
    [(c: Clients) => () => c.interaction.sendInput({ worker, input: { text: "more" } }), "SendInput"],
    [(c: Clients) => firstStreamInput(c, worker), "StreamInput"],
  ] as const) {
    const direct = await refusal(call(side.clients.direct));
    expect(direct, `${side.runtimeId} ${label} direct`).toMatchObject({ code: Code[code], reason: ErrorReason[reason] });
    for (const route of ["backend grpc", "backend connect", "console"] as const) {
      expect(await refusal(call(side.clients[route])), `${side.runtimeId} ${label} ${route}`).toEqual(direct);
    }
  }
}

/** GetWorker, and the worker in ListWorkers (by runtime and across runtimes), as the runtime shows them directly. */
async function expectSameWorker(side: Side, worker: WorkerRef, status: WorkerStatus): Promise<Worker | undefined> {
  const direct = (await side.clients.direct.catalog.getWorker({ worker })).worker;
  expect(direct?.status, `${side.runtimeId} direct GetWorker`).toBe(status);
  const listedDirect = (await side.clients.direct.catalog.listWorkers({ runtimeId: side.runtimeId })).workers.find(
    (w) => w.ref?.workerId === worker.workerId,
  );
  expect(listedDirect, `${side.runtimeId} direct ListWorkers`).toEqual(direct);
  for (const route of ["backend grpc", "backend connect", "console"] as const) {
    const clients = side.clients[route];
    expect((await clients.catalog.getWorker({ worker })).worker, `${side.runtimeId} GetWorker ${route}`).toEqual(direct);
    for (const runtimeId of [side.runtimeId, ""]) {
      const listed = (await clients.catalog.listWorkers({ runtimeId, pageSize: 100 })).workers.find(
        (w) => w.ref?.runtimeId === side.runtimeId && w.ref?.workerId === worker.workerId,
      );
      expect(listed, `${side.runtimeId} ListWorkers(${runtimeId || "all"}) ${route}`).toEqual(direct);
    }
  }
  return direct;
}

/** A new watch through every Backend route opens with the direct watch's snapshot, then goes on as it does. */
async function expectSameNewWatch(side: Side, worker: WorkerRef, status: WorkerStatus): Promise<void> {
  const readers = (["direct", "backend grpc", "backend connect", "console"] as const).map(
    (route) => [route, new WatchReader(side.clients[route], worker)] as const,
  );
  try {
    const direct = await readers[0]![1].snapshot();
    expect(direct?.worker?.status, `${side.runtimeId} direct new watch`).toBe(status);
    for (const [route, reader] of readers.slice(1)) expect(await reader.snapshot(), `${side.runtimeId} new watch ${route}`).toEqual(direct);
    const beats = await Promise.all(readers.map(([, reader]) => reader.heartbeatAfter(1)));
    expect(beats.slice(1), `${side.runtimeId} new watch heartbeats`).toEqual(beats.slice(1).map(() => beats[0]));
    // Resumed from its first event: the same snapshot, then the same stored events, then heartbeats.
    const afterCursor = cursorAt(direct?.cursor ?? "", 1n);
    const resumed = await resumedUntilHeartbeat(side.clients.direct, worker, afterCursor);
    expect(resumed[0], `${side.runtimeId} resumed direct`).toBe(`snapshot ${WorkerStatus[status]}`);
    for (const [route] of readers.slice(1)) {
      expect(await resumedUntilHeartbeat(side.clients[route], worker, afterCursor), `${side.runtimeId} resumed ${route}`).toEqual(resumed);
    }
  } finally {
    for (const [, reader] of readers) reader.close();
  }
}

/** A watch resumed after `afterCursor`, read up to its first heartbeat: the snapshot's status, then each message's event seqs. */
async function resumedUntilHeartbeat(clients: Clients, worker: WorkerRef, afterCursor: string): Promise<string[]> {
  const seen: string[] = [];
  const controller = new AbortController();
  for await (const message of clients.observation.watchWorker({ worker, afterCursor }, { signal: controller.signal })) {
    if (message.heartbeat) {
      controller.abort();
      return seen;
    }
    seen.push(
      message.snapshot ? `snapshot ${WorkerStatus[message.snapshot.worker?.status ?? 0]}` : message.events.map((e) => e.seq).join(","),
    );
  }
  seen.push("ended");
  return seen;
}

describe.each([
  ["a remote runtime", 0],
  ["the embedded runtime", 1],
])("a worker that ended, through a Backend, on %s", (_, index) => {
  const side = () => sides[index] as Side;

  it("FAILED while watched: every view says so as the runtime does directly", async () => {
    const { late: worker, clients } = side();
    const open = (["direct", "backend grpc", "backend connect", "console"] as const).map(
      (route) => [route, new WatchReader(clients[route], worker)] as const,
    );
    const runtimeWatches = (["direct", "backend grpc", "console"] as const).map((route) => runtimeWatchOf(side(), route));
    try {
      for (const [, reader] of open) expect((await reader.snapshot())?.worker?.status).toBe(WorkerStatus.IDLE);
      await Promise.all(runtimeWatches.map((w) => w.opened));
      // The first read of the damaged segment finds the damage: the worker is quarantined.
      const read = () => clients.direct.observation.readTranscript({ worker, position: { case: "afterSeq", value: 0n } });
      expect(await refusal(read)).toMatchObject({ code: "DataLoss", reason: "WORKER_FAILED" });
      await eventually(async () => (await clients.direct.catalog.getWorker({ worker })).worker?.status === WorkerStatus.FAILED);
      for (const route of ["backend grpc", "backend connect", "console"] as const) {
        expect(
          await refusal(() => clients[route].observation.readTranscript({ worker, position: { case: "afterSeq", value: 0n } })),
        ).toEqual(await refusal(read));
      }

      const failed = await expectSameWorker(side(), worker, WorkerStatus.FAILED);
      expect(failed?.failureMessage).toMatch(/damaged/);
      await expectSameRefusals(side(), worker, Code.FailedPrecondition, ErrorReason.WORKER_FAILED);

      // A watch open when the worker failed is told, with the cause, and goes on as a direct one does.
      const seen = await Promise.all(open.map(([route, reader]) => changeTo(reader, WorkerStatus.FAILED, `${side().runtimeId} ${route}`)));
      for (const [i, { worker: changed }] of seen.entries()) {
        expect(changed.failureMessage, open[i]![0]).toBe(failed?.failureMessage);
      }
      const beats = await Promise.all(open.map(([, reader], i) => reader.heartbeatAfter(seen[i]!.index + 1)));
      expect(beats.slice(1)).toEqual(beats.slice(1).map(() => beats[0]));

      await expectSameNewWatch(side(), worker, WorkerStatus.FAILED);

      // The runtime-wide stream (served from the Backend's shared upstream watch) tells it as the runtime does.
      const updates = await Promise.all(runtimeWatches.map((w) => w.updateTo(worker, WorkerStatus.FAILED)));
      expect(updates[0]?.failureMessage).toBe(failed?.failureMessage);
      expect(updates.slice(1)).toEqual(updates.slice(1).map(() => updates[0]));
    } finally {
      for (const [, reader] of open) reader.close();
      for (const w of runtimeWatches) w.close();
    }
  });

  it("FAILED at start-up (its snapshot damaged): every view says so as the runtime does directly", async () => {
    const { early: worker } = side();
    const failed = await expectSameWorker(side(), worker, WorkerStatus.FAILED);
    // Plain words: the damaged file is for the operator's log and diagnostics, not for clients.
    expect(failed?.failureMessage).toMatch(/stored state is damaged/);
    expect(failed?.failureMessage).not.toMatch(/worker\.snapshot/);
    await expectSameRefusals(side(), worker, Code.FailedPrecondition, ErrorReason.WORKER_FAILED);
    await expectSameNewWatch(side(), worker, WorkerStatus.FAILED);
  });

  it("STOPPED through the Backend while watched: every view says so as the runtime does directly", async () => {
    const { stopped: worker, clients } = side();
    const open = (["direct", "backend grpc", "backend connect", "console"] as const).map(
      (route) => [route, new WatchReader(clients[route], worker)] as const,
    );
    try {
      for (const [, reader] of open) expect((await reader.snapshot())?.worker?.status).toBe(WorkerStatus.IDLE);
      await clients["backend grpc"].catalog.stopWorker({ worker });

      const stopped = await expectSameWorker(side(), worker, WorkerStatus.STOPPED);
      await expectSameRefusals(side(), worker, Code.FailedPrecondition, ErrorReason.WORKER_STOPPED);
      const seen = await Promise.all(open.map(([route, reader]) => changeTo(reader, WorkerStatus.STOPPED, `${side().runtimeId} ${route}`)));
      for (const { worker: changed } of seen) expect(changed.ref).toEqual(stopped?.ref);
      const beats = await Promise.all(open.map(([, reader], i) => reader.heartbeatAfter(seen[i]!.index + 1)));
      expect(beats.slice(1)).toEqual(beats.slice(1).map(() => beats[0]));

      await expectSameNewWatch(side(), worker, WorkerStatus.STOPPED);
    } finally {
      for (const [, reader] of open) reader.close();
    }
  });
});
