import { Code, ConnectError, createRouterTransport, type Interceptor } from "@connectrpc/connect";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RuntimeHealth } from "../../gen/worker_runtime/v1/backend_pb.js";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorDetailSchema, ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { RuntimeStatus } from "../../gen/worker_runtime/v1/runtime_pb.js";
import { type Backend, createBackend } from "../../src/backend/index.js";
import { createRuntime, silentLogger } from "../../src/runtime/index.js";
import { createFileStore, type FileStoreFaults } from "../../src/store/fs/index.js";
import { expectError } from "../support/errors.js";
import { type Clients, clientsFor, eventually, type Harness, startHarness } from "../support/harness.js";

/**
 * During a store outage a runtime opens each WatchRuntime (its snapshot
 * goes out at once) and ends it straight after with STORE_UNAVAILABLE.
 * The Backend's shared relay of it used to reset its backoff on that first
 * message, so it re-opened at the initial delay (about once a second with
 * the defaults) for the whole outage. Its backoff now resets only once the
 * stream proves healthy (a real event, or open for a while), so such a
 * runtime is retried with growing, capped backoff, and once the store
 * writes again the relay delivers live events again. A relayed WatchWorker
 * is not ridden out that way: STORE_UNAVAILABLE is the worker's own typed
 * end, told to its client (who resumes by cursor), so nothing re-opens it
 * (relayed-watch-backoff.test.ts checks the backoff of the re-opens a
 * relayed WatchWorker does make). A real runtime with a file store whose
 * runtime-wide event log (or one worker's) fails, served on 127.0.0.1.
 */
let dir: string;
let harness: Harness;
let backend: Backend;
let viaBackend: Clients;
/** The runtime-wide event log fails while set (the workers' files still write). */
let eventsFail = false;
/** This worker's event log fails while set. */
let workerEventsFail = "";
const faults: FileStoreFaults = {
  beforeWrite: (file) => {
    if (eventsFail && file.startsWith(`events${path.sep}`)) throw Object.assign(new Error("fault: ENOSPC"), { code: "ENOSPC" });
    if (workerEventsFail && file.startsWith(path.join("workers", workerEventsFail, "events")))
      throw Object.assign(new Error("fault: ENOSPC"), { code: "ENOSPC" });
  },
};
/** WatchWorker calls that reached the runtime. */
let workerWatchOpens = 0;
const countWatches: Interceptor = (next) => (request) => {
  if (request.method.name === "WatchWorker") workerWatchOpens++;
  return next(request);
};
const BACKOFF = { initialMs: 100, multiplier: 2, jitter: 0, maxMs: 800 };

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "store-outage-relay-"));
  harness = await startHarness({
    runtimeId: "rf",
    heartbeatIntervalMs: 100,
    storeProbeIntervalMs: 50,
    store: createFileStore({ dataDir: dir, faults }),
    interceptors: [countWatches],
  });
  backend = createBackend({
    runtime: await createRuntime({ logger: silentLogger, runtimeId: "emb" }),
    logger: silentLogger,
    remotes: [{ runtimeId: "rf", url: harness.baseUrl }],
    backoff: BACKOFF,
    heartbeatMs: 100,
  });
  viaBackend = clientsFor(createRouterTransport(backend.routes));
  await eventually(() => backend.directory.get("rf")?.health === RuntimeHealth.READY, 10_000, "READY");
});

afterAll(async () => {
  eventsFail = false;
  backend?.close();
  await harness?.close();
  await rm(dir, { recursive: true, force: true });
});

describe("the Backend's shared WatchRuntime relay during a store outage", () => {
  it("re-opens with growing backoff while each stream fails at once, and relays live events again once the store writes", async () => {
    const shared = backend.runtimeWatch("rf");
    if (!shared) throw new Error("no shared watch");
    await eventually(() => shared.upstreamOpens >= 1, 5_000, "the shared watch open");

    eventsFail = true;
    // The worker is written, its runtime-wide event is not: it is owed, and each watch opened meanwhile ends at once.
    expect((await viaBackend.catalog.createWorker({ runtimeId: "rf" })).worker).toBeDefined();
    await eventually(async () => (await harness.connect("grpc").management.getRuntime({})).runtime?.status === RuntimeStatus.DEGRADED);
    const from = shared.upstreamOpens;
    await new Promise((resolve) => setTimeout(resolve, 3_000));
    const opens = shared.upstreamOpens - from;
    // 100, 200, 400, 800, 800 ms... fit 5-6 re-opens in 3 s; reset to 100 ms each time they were about 25.
    expect(opens).toBeGreaterThanOrEqual(2);
    expect(opens).toBeLessThanOrEqual(8);

    eventsFail = false;
    // Once the store writes, the relay is back: the next worker's workerCreated reaches a client through it.
    const watch = new AbortController();
    const seen: string[] = [];
    const reading = (async () => {
      try {
        for await (const message of viaBackend.observation.watchRuntime({ runtimeId: "rf" }, { signal: watch.signal }))
          for (const event of message.events) if (event.kind.case === "workerCreated") seen.push(event.kind.value.ref?.workerId ?? "");
      } catch {}
    })();
    await eventually(async () => (await harness.connect("grpc").management.getRuntime({})).runtime?.status === RuntimeStatus.SERVING);
    const after = (await viaBackend.catalog.createWorker({ runtimeId: "rf" })).worker?.ref as WorkerRef;
    await eventually(() => seen.includes(after.workerId), 10_000, "the next workerCreated through the relay");
    watch.abort();
    await reading;
  });
});

describe("a relayed WatchWorker during a store outage", () => {
  it("is not re-opened: the worker's watch ends with STORE_UNAVAILABLE, which its client is told, to resume by cursor", async () => {
    const worker = (await viaBackend.catalog.createWorker({ runtimeId: "rf" })).worker?.ref as WorkerRef;
    const watch = new AbortController();
    let messages = 0;
    let ended: unknown;
    const reading = (async () => {
      try {
        for await (const _ of viaBackend.observation.watchWorker({ worker }, { signal: watch.signal })) messages++;
      } catch (error) {
        ended = error;
      }
    })();
    await eventually(() => messages > 0, 5_000, "the watch's snapshot");
    workerEventsFail = worker.workerId;
    try {
      const from = workerWatchOpens;
      // The stop's workerChanged cannot be written (the call fails), so the runtime ends the worker's watches.
      await expectError(() => viaBackend.catalog.stopWorker({ worker }));
      await reading;
      const error = ConnectError.from(ended);
      expect([error.code, error.findDetails(ErrorDetailSchema)[0]?.reason]).toEqual([Code.Unavailable, ErrorReason.STORE_UNAVAILABLE]);
      // Unlike the shared WatchRuntime (above), nothing re-opens it behind the client's back.
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      expect(workerWatchOpens - from).toBe(0);
    } finally {
      workerEventsFail = "";
      watch.abort();
    }
  });
});
