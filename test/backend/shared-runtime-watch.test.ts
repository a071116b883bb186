import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RuntimeHealth } from "../../gen/worker_runtime/v1/backend_pb.js";
import { ErrorDetailSchema, ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { WorkerStatus } from "../../gen/worker_runtime/v1/worker_pb.js";
import type { RuntimeSnapshot } from "../../gen/worker_runtime/v1/events_pb.js";
import { WatchRuntimeResponseSchema } from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import { createBackend, type Backend } from "../../src/backend/index.js";
import { createRuntime, silentLogger, type Runtime } from "../../src/runtime/index.js";
import { startRuntimeServer, type RuntimeServer } from "../../src/server/index.js";
import { createFileStore } from "../../src/store/fs/index.js";
import { cursorAt } from "../support/cursors.js";
import { clientsFor, eventually, makeTransport, type Clients } from "../support/harness.js";
import { Http2SessionManager } from "@connectrpc/connect-node";

/**
 * The Backend's shared WatchRuntime: a remote runtime server (file store,
 * restartable on the same port) behind a Backend served on its own port,
 * clients over real HTTP/2. The runtime's own subscription count shows how
 * many upstream watches the Backend holds.
 */
const RING = 16;
let dir: string;
let remote: { runtime: Runtime; server: RuntimeServer };
let port = 0;
let backend: Backend;
let backendServer: RuntimeServer;
let client: Clients;
const sessions: Http2SessionManager[] = [];

async function startRemote(): Promise<void> {
  const runtime = await createRuntime({
    logger: silentLogger,
    runtimeId: "rs",
    heartbeatIntervalMs: 200,
    store: createFileStore({ dataDir: join(dir, "rs") }),
  });
  const server = await startRuntimeServer({ runtime, host: "127.0.0.1", port, logger: silentLogger, closeTimeoutMs: 100 });
  port = Number(server.h2Address.split(":").pop());
  remote = { runtime, server };
}

function connect(): Clients {
  const baseUrl = `http://${backendServer.h2Address}`;
  const session = new Http2SessionManager(baseUrl);
  sessions.push(session);
  return clientsFor(makeTransport("grpc", baseUrl, session));
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "wr-shared-watch-"));
  await startRemote();
  const embedded = await createRuntime({ logger: silentLogger, runtimeId: "emb" });
  backend = createBackend({
    runtime: embedded,
    logger: silentLogger,
    remotes: [{ runtimeId: "rs", url: `http://127.0.0.1:${port}` }],
    backoff: { initialMs: 50, maxMs: 200 },
    heartbeatMs: 100,
    runtimeWatchRing: { maxEvents: RING },
  });
  backendServer = await startRuntimeServer({ runtime: embedded, routes: backend.routes, host: "127.0.0.1", port: 0, logger: silentLogger });
  client = connect();
  await eventually(() => backend.directory.get("rs")?.health === RuntimeHealth.READY, 10_000, "READY");
  await eventually(() => remote.runtime.stats().subscriptions === 1, 10_000, "the shared upstream watch");
});

afterAll(async () => {
  for (const session of sessions) session.abort();
  backend?.close();
  await backendServer?.close(0);
  await remote?.server.close(0);
  await rm(dir, { recursive: true, force: true });
});

/** A WatchRuntime client through the Backend, recording durable event seqs and cursors. */
interface Watcher {
  seqs: bigint[];
  cursors: string[];
  snapshotCursor: string | undefined;
  heartbeats: string[];
  /** Workers removed, by id. */
  removed: string[];
  /** Workers updated to STOPPED, by id. */
  stopped: string[];
  error: ConnectError | undefined;
  stop(): void;
}

function watch(afterCursor = "", clients = connect()): Watcher {
  const abort = new AbortController();
  const watcher: Watcher = {
    seqs: [],
    cursors: [],
    snapshotCursor: undefined,
    heartbeats: [],
    removed: [],
    stopped: [],
    error: undefined,
    stop: () => abort.abort(),
  };
  void (async () => {
    try {
      for await (const message of clients.observation.watchRuntime({ runtimeId: "rs", afterCursor }, { signal: abort.signal })) {
        if (message.snapshot) watcher.snapshotCursor = message.snapshot.cursor;
        if (message.heartbeat) watcher.heartbeats.push(message.heartbeat.cursor);
        for (const event of message.events) {
          if (event.kind.case === "workerRemoved") watcher.removed.push(event.kind.value.workerId);
          if (event.kind.case === "workerUpdated" && event.kind.value.status === WorkerStatus.STOPPED) {
            watcher.stopped.push(event.kind.value.ref?.workerId ?? "");
          }
          if (event.seq === 0n) continue;
          watcher.seqs.push(event.seq);
          watcher.cursors.push(event.cursor);
        }
      }
    } catch (error) {
      if (!abort.signal.aborted) watcher.error = ConnectError.from(error);
    }
  })();
  return watcher;
}

async function createWorkers(count: number): Promise<void> {
  for (let i = 0; i < count; i++) await client.catalog.createWorker({ runtimeId: "rs", displayName: `w${i}` });
}

function consecutive(seqs: bigint[]): boolean {
  return seqs.every((seq, i) => i === 0 || seq === (seqs[i - 1] as bigint) + 1n);
}

/** Clients straight to the runtime, never through the Backend. */
function direct(): Clients {
  const baseUrl = `http://${remote.server.h2Address}`;
  const session = new Http2SessionManager(baseUrl);
  sessions.push(session);
  return clientsFor(makeTransport("grpc", baseUrl, session));
}

/** The first message of a WatchRuntime (its snapshot), the stream then cancelled (leaving the loop alone does not end it). */
async function firstSnapshot(clients: Clients, afterCursor = ""): Promise<RuntimeSnapshot | undefined> {
  const abort = new AbortController();
  try {
    for await (const message of clients.observation.watchRuntime({ runtimeId: "rs", afterCursor }, { signal: abort.signal })) {
      return message.snapshot;
    }
    return undefined;
  } finally {
    abort.abort();
  }
}

describe("the Backend's shared WatchRuntime", () => {
  // First: the shared upstream watch is still at the snapshot it opened with when rs became READY.
  it("gives a client that joins after changes the snapshot a direct watch gets then: today's counts, the last cursor", async () => {
    const opens = backend.runtimeWatch("rs")?.upstreamOpens;
    // Told of the last change, the runtime has delivered every event of these changes: both snapshots come after them.
    const told = watch("", direct());
    const created = async (name: string) => (await client.catalog.createWorker({ runtimeId: "rs", displayName: name })).worker?.ref;
    const [kept, stopped, deleted] = [await created("kept"), await created("stopped"), await created("deleted")];
    await client.catalog.stopWorker({ worker: stopped });
    await client.catalog.deleteWorker({ worker: deleted, force: true });
    expect(kept).toBeDefined();
    await eventually(() => told.removed.includes(deleted?.workerId ?? ""), 10_000, "the removal");
    told.stop();
    const directly = await firstSnapshot(direct());
    expect(directly?.runtime?.workerCounts).toMatchObject({ idle: 1, stopped: 1 });
    const through = await firstSnapshot(connect());
    expect(through, "a new client's snapshot through the Backend").toEqual(directly);
    // Then the events after that snapshot, none from before it, as a direct watch gets them.
    const late = watch();
    const alongside = watch("", direct());
    await eventually(() => late.snapshotCursor !== undefined && alongside.snapshotCursor !== undefined, 10_000, "snapshots");
    expect(late.snapshotCursor).toBe(alongside.snapshotCursor);
    await createWorkers(1);
    await eventually(() => late.seqs.length >= 1 && alongside.seqs.length >= 1, 10_000, "the next event");
    expect(late.seqs).toEqual(alongside.seqs);
    expect(backend.runtimeWatch("rs")?.upstreamOpens).toBe(opens);
    late.stop();
    alongside.stop();
    await eventually(() => remote.runtime.stats().subscriptions === 1, 10_000, "only the shared upstream watch left");
  });

  it("opens a client resumed from the ring with the runtime summary a direct resume gets", async () => {
    const first = watch();
    await eventually(() => first.snapshotCursor !== undefined, 10_000, "snapshot");
    await createWorkers(1);
    await eventually(() => first.seqs.length >= 1, 10_000, "an event");
    first.stop();
    // Changes the registry's last summary (fetched when rs became READY) does not show.
    const told = watch("", direct());
    const { worker } = await client.catalog.createWorker({ runtimeId: "rs", displayName: "to stop" });
    await client.catalog.stopWorker({ worker: worker?.ref });
    await eventually(() => told.stopped.includes(worker?.ref?.workerId ?? "-"), 10_000, "the stop");
    told.stop();
    const afterCursor = first.cursors.at(-1) as string;
    const directly = await firstSnapshot(direct(), afterCursor);
    const through = await firstSnapshot(connect(), afterCursor);
    expect(through?.runtime, "a resumed client's snapshot through the Backend").toEqual(directly?.runtime);
    expect(through?.cursor).toBe(directly?.cursor);
    await eventually(() => remote.runtime.stats().subscriptions === 1, 10_000, "only the shared upstream watch left");
  });

  it("serves many clients from one upstream watch, with identical gap-free sequences", async () => {
    const opens = backend.runtimeWatch("rs")?.upstreamOpens;
    const watchers = Array.from({ length: 6 }, () => watch());
    await eventually(() => watchers.every((w) => w.snapshotCursor !== undefined), 10_000, "snapshots");
    // The probe that took their snapshot closes; no client holds an upstream watch of its own.
    await eventually(() => remote.runtime.stats().subscriptions === 1, 10_000, "only the shared upstream watch");
    await createWorkers(5);
    const last = (await client.catalog.listWorkers({ runtimeId: "rs" })).workers.length;
    expect(last).toBeGreaterThanOrEqual(5);
    await eventually(() => watchers.every((w) => w.seqs.filter((s) => s > 0n).length >= 5), 10_000, "events");
    const expected = watchers[0]?.seqs ?? [];
    expect(consecutive(expected)).toBe(true);
    for (const w of watchers) expect(w.seqs).toEqual(expected);
    expect(remote.runtime.stats().subscriptions).toBe(1);
    expect(backend.runtimeWatch("rs")?.upstreamOpens).toBe(opens);
    for (const w of watchers) expect(w.error).toBeUndefined();
    for (const w of watchers) w.stop();
  });

  it("resumes a client from a cursor inside the ring without another upstream watch", async () => {
    const first = watch();
    await eventually(() => first.snapshotCursor !== undefined, 10_000, "snapshot");
    await createWorkers(3);
    await eventually(() => first.seqs.length >= 3, 10_000, "events");
    first.stop();
    const resumed = watch(first.cursors[0]);
    await createWorkers(1);
    await eventually(() => resumed.seqs.length >= 3, 10_000, "resumed events");
    expect(resumed.seqs[0]).toBe((first.seqs[0] as bigint) + 1n);
    expect(consecutive(resumed.seqs)).toBe(true);
    expect(remote.runtime.stats().subscriptions).toBe(1);
    resumed.stop();
  });

  it("opens a resumed client's stream with a snapshot at once, as the runtime does", async () => {
    const first = watch();
    await eventually(() => first.snapshotCursor !== undefined, 10_000, "snapshot");
    const seen = first.seqs.length;
    await createWorkers(2);
    await eventually(() => first.seqs.length >= seen + 2, 10_000, "events");
    await new Promise((resolve) => setTimeout(resolve, 300)); // nothing else comes
    first.stop();
    const afterCursor = first.cursors.at(-2) as string;
    const firstTwo = async (clients: Clients) => {
      const abort = new AbortController();
      const messages = [];
      for await (const message of clients.observation.watchRuntime({ runtimeId: "rs", afterCursor }, { signal: abort.signal })) {
        messages.push(message);
        if (messages.length === 2) break;
      }
      abort.abort();
      return messages;
    };
    const directUrl = `http://${remote.server.h2Address}`;
    const directSession = new Http2SessionManager(directUrl);
    sessions.push(directSession);
    const [direct] = await firstTwo(clientsFor(makeTransport("grpc", directUrl, directSession)));
    expect(direct?.snapshot).toBeDefined();
    await eventually(() => remote.runtime.stats().subscriptions === 1, 10_000, "the direct watch closed");
    const served = backend.runtimeWatch("rs")?.clientsServed ?? 0;
    const [snapshot, next] = await firstTwo(connect());
    // The snapshot is at the last durable cursor, the events after the client's cursor follow.
    expect(snapshot?.snapshot?.cursor).toBe(first.cursors.at(-1));
    expect(snapshot?.snapshot?.runtime?.runtimeId).toBe("rs");
    expect(snapshot?.events).toEqual([]);
    expect(next?.events.map((event) => event.seq)).toEqual([first.seqs.at(-1)]);
    // Served from the ring, not relayed on an upstream watch of its own (the probe that took its snapshot closes).
    expect(backend.runtimeWatch("rs")?.clientsServed).toBe(served + 1);
    await eventually(() => remote.runtime.stats().subscriptions === 1, 10_000, "only the shared upstream watch");
  });

  it("passes the runtime's heartbeats on to idle clients, with the last durable cursor", async () => {
    const w = watch();
    await eventually(() => w.snapshotCursor !== undefined, 10_000, "snapshot");
    await createWorkers(1);
    await eventually(() => w.seqs.length >= 1, 10_000, "an event");
    // Counted from the event on: beats that came while the create was being written carry the snapshot's cursor.
    const before = w.heartbeats.length;
    await eventually(() => w.heartbeats.length >= before + 2, 10_000, "heartbeats");
    expect(w.heartbeats.at(-1)).toBe(w.cursors.at(-1));
    w.stop();
  });

  it("relays a cursor older than the ring on the client's own upstream watch", async () => {
    const probe = watch();
    await eventually(() => probe.snapshotCursor !== undefined, 10_000, "snapshot");
    await createWorkers(RING + 4);
    await eventually(() => probe.seqs.length >= RING + 4, 10_000, "events");
    probe.stop();
    const old = watch(cursorAt(probe.cursors[0] as string, 1n));
    await eventually(() => remote.runtime.stats().subscriptions === 2, 10_000, "the client's own upstream watch");
    await eventually(
      () => old.seqs.length > 0 && (old.seqs.at(-1) as bigint) >= (probe.seqs.at(-1) as bigint),
      10_000,
      "the relayed events",
    );
    expect(old.seqs[0]).toBe(2n);
    expect(consecutive(old.seqs)).toBe(true);
    old.stop();
    await eventually(() => remote.runtime.stats().subscriptions === 1, 10_000, "the relay's upstream closed");
  });

  it("gives new clients a fresh shared snapshot once the ring has moved past the first one", async () => {
    const before = backend.runtimeWatch("rs")?.upstreamOpens;
    const watchers = Array.from({ length: 3 }, () => watch());
    await eventually(() => watchers.every((w) => w.snapshotCursor !== undefined), 10_000, "snapshots");
    // The snapshot probe closes; no client holds an upstream watch of its own.
    await eventually(() => remote.runtime.stats().subscriptions === 1, 10_000, "only the shared upstream watch");
    await createWorkers(2);
    await eventually(() => watchers.every((w) => w.seqs.length >= 2), 10_000, "events");
    const expected = watchers[0]?.seqs ?? [];
    expect(consecutive(expected)).toBe(true);
    for (const w of watchers) expect(w.seqs).toEqual(expected);
    expect(remote.runtime.stats().subscriptions).toBe(1);
    expect(backend.runtimeWatch("rs")?.upstreamOpens).toBe(before);
    for (const w of watchers) w.stop();
  });

  it("resumes the shared upstream across a runtime restart: no gap, no duplicate", async () => {
    const watchers = Array.from({ length: 3 }, () => watch());
    await eventually(() => watchers.every((w) => w.snapshotCursor !== undefined), 10_000, "snapshots");
    await eventually(() => remote.runtime.stats().subscriptions === 1, 10_000, "only the shared upstream watch");
    await createWorkers(2);
    await eventually(() => watchers.every((w) => w.seqs.length >= 2), 10_000, "events before the restart");
    const opens = backend.runtimeWatch("rs")?.upstreamOpens ?? 0;
    await remote.server.close(0);
    await startRemote();
    await eventually(() => backend.directory.get("rs")?.health === RuntimeHealth.READY, 10_000, "READY again");
    await eventually(() => remote.runtime.stats().subscriptions === 1, 10_000, "the shared watch resumed");
    await createWorkers(3);
    await eventually(() => watchers.every((w) => w.seqs.length >= 5), 10_000, "events after the restart");
    const expected = watchers[0]?.seqs ?? [];
    expect(consecutive(expected)).toBe(true);
    for (const w of watchers) {
      expect(w.seqs).toEqual(expected);
      expect(w.error).toBeUndefined();
    }
    expect(backend.runtimeWatch("rs")?.upstreamOpens).toBeGreaterThan(opens);
    expect(remote.runtime.stats().subscriptions).toBe(1);
    for (const w of watchers) w.stop();
  });

  it("ends a client that falls behind the ring with RESOURCE_EXHAUSTED, never blocking the others", async () => {
    const shared = backend.runtimeWatch("rs");
    const live = watch();
    await eventually(() => live.snapshotCursor !== undefined, 10_000, "snapshot");
    await createWorkers(1);
    await eventually(() => live.seqs.length >= 1, 10_000, "an event");
    const abort = new AbortController();
    const slow = await shared?.serve(live.cursors.at(-1) as string, abort.signal); // then it never reads
    expect(slow).toBeDefined();
    await createWorkers(RING + 2);
    await eventually(() => live.seqs.length >= RING + 3, 10_000, "the live client's events");
    const error = await (async () => {
      try {
        for (;;) if ((await slow?.next())?.done) return undefined;
      } catch (caught) {
        return ConnectError.from(caught);
      }
    })();
    expect(error?.code).toBe(Code.ResourceExhausted);
    expect(error?.findDetails(ErrorDetailSchema)[0]?.reason).toBe(ErrorReason.SUBSCRIBER_TOO_SLOW);
    expect(consecutive(live.seqs)).toBe(true);
    expect(live.error).toBeUndefined();
    live.stop();
    abort.abort();
  });

  it("gives a reader that was behind a heartbeat with the cursor it has reached, never an older one", async () => {
    const shared = backend.runtimeWatch("rs");
    const live = watch();
    await eventually(() => live.snapshotCursor !== undefined, 10_000, "snapshot");
    await createWorkers(1);
    await eventually(() => live.seqs.length >= 1, 10_000, "an event");
    const abort = new AbortController();
    const lagging = await shared?.serve(live.cursors.at(-1) as string, abort.signal); // read only later
    expect(lagging).toBeDefined();
    // An upstream heartbeat passes while the reader reads nothing, then events follow it.
    const beats = live.heartbeats.length;
    await eventually(() => live.heartbeats.length > beats, 10_000, "an upstream heartbeat");
    await createWorkers(2);
    await eventually(() => live.seqs.length >= 3, 10_000, "the new events");
    const cursors: string[] = [];
    let heartbeat: string | undefined;
    while (heartbeat === undefined) {
      const next = await lagging?.next();
      if (!next || next.done) break;
      const message = fromBinary(WatchRuntimeResponseSchema, toBinary(WatchRuntimeResponseSchema, next.value));
      for (const event of message.events) if (event.cursor) cursors.push(event.cursor);
      if (message.heartbeat) heartbeat = message.heartbeat.cursor;
    }
    expect(cursors).toEqual(live.cursors.slice(-2));
    // The heartbeat's cursor is the resume point: an older one would replay the events just read.
    expect(heartbeat).toBe(cursors.at(-1));
    abort.abort();
    await lagging?.return(undefined);
    live.stop();
  });

  it("re-snapshots when the runtime's store is replaced: clients get the typed error, never a silent gap", async () => {
    const w = watch();
    await eventually(() => w.snapshotCursor !== undefined, 10_000, "snapshot");
    await eventually(() => remote.runtime.stats().subscriptions === 1, 10_000, "only the shared upstream watch");
    await remote.server.close(0);
    await rm(join(dir, "rs"), { recursive: true, force: true });
    await startRemote();
    await eventually(() => w.error !== undefined, 10_000, "the typed error");
    expect(w.error?.code).toBe(Code.InvalidArgument);
    expect(w.error?.findDetails(ErrorDetailSchema)[0]?.reason).toBe(ErrorReason.CURSOR_FOREIGN);
    await eventually(() => remote.runtime.stats().subscriptions === 1, 10_000, "the shared watch re-opened");
    const fresh = watch();
    await eventually(() => fresh.snapshotCursor !== undefined, 10_000, "a fresh snapshot");
    await createWorkers(2);
    await eventually(() => fresh.seqs.length >= 2, 10_000, "events of the new store");
    expect(fresh.seqs[0]).toBe(1n);
    expect(consecutive(fresh.seqs)).toBe(true);
    expect(remote.runtime.stats().subscriptions).toBe(1);
    fresh.stop();
  });

  it("serves JSON clients the decoded events", async () => {
    const baseUrl = `http://${backendServer.h2Address}`;
    const session = new Http2SessionManager(baseUrl);
    sessions.push(session);
    const json = clientsFor(makeTransport("connect", baseUrl, session)); // Connect with JSON
    const w = watch("", json);
    await eventually(() => w.snapshotCursor !== undefined, 10_000, "snapshot");
    await createWorkers(2);
    await eventually(() => w.seqs.length >= 2, 10_000, "events");
    expect(consecutive(w.seqs)).toBe(true);
    w.stop();
  });

  it("stops the shared upstream when the runtime is removed, ending its clients with NOT_FOUND", async () => {
    const w = watch();
    await eventually(() => w.snapshotCursor !== undefined, 10_000, "snapshot");
    expect(backend.directory.remove("rs")).toBe(true);
    await eventually(() => w.error !== undefined, 10_000, "the typed error");
    expect(w.error?.code).toBe(Code.NotFound);
    expect(w.error?.findDetails(ErrorDetailSchema)[0]?.reason).toBe(ErrorReason.NOT_FOUND);
    await eventually(() => remote.runtime.stats().subscriptions === 0, 10_000, "no upstream watch left");
  });
});
