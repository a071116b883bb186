import type { Interceptor } from "@connectrpc/connect";
import { createConnectTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import type { WatchWorkerRequest, WatchWorkerResponse } from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import { createRuntime, silentLogger } from "../../src/runtime/index.js";
import { type BackendWithRemote, startBackendWithRemote } from "../support/backend-with-remote.js";
import { type Clients, clientsFor, eventually } from "../support/harness.js";
import { WorkerWatchReader } from "./worker-watch-reader.js";

/**
 * A relayed WatchWorker (relayWatch) re-opens its upstream after the
 * stream ends or fails, with a backoff. A Runtime sends a snapshot at once
 * on every open and a heartbeat whenever it is idle, and the relay used to
 * reset its backoff on any message: an upstream that opened, sent those and
 * ended (here: a remote whose every WatchWorker ends after its first
 * heartbeat, as an intermediary that closes long-lived streams would end
 * them) was re-opened about every 200 ms for as long as it lasted. The
 * backoff now resets only once a stream proves healthy (a real event, or
 * open for a while: stream-retry.ts), so it grows. Both relays are checked:
 * the shared upstream (a binary client without a cursor) and a client's own
 * (a Connect JSON client with a cursor, relayed decoded). A real Backend in
 * front of a real remote runtime, each on 127.0.0.1.
 */
let setup: BackendWithRemote;
const sessions: Http2SessionManager[] = [];
/** WatchWorker calls that reached the remote, by worker id. */
const opens = new Map<string, number>();
/** Ends each WatchWorker on the remote cleanly right after its first heartbeat. */
const endAfterHeartbeat: Interceptor = (next) => async (request) => {
  if (request.method.name !== "WatchWorker" || !request.stream) return next(request);
  // A server-streaming call's one request message, counted as it is read.
  async function* counted(messages: AsyncIterable<WatchWorkerRequest>): AsyncIterable<WatchWorkerRequest> {
    for await (const message of messages) {
      const workerId = message.worker?.workerId ?? "";
      opens.set(workerId, (opens.get(workerId) ?? 0) + 1);
      yield message;
    }
  }
  const response = await next({ ...request, message: counted(request.message as AsyncIterable<WatchWorkerRequest>) } as typeof request);
  if (!response.stream) return response;
  async function* untilHeartbeat(messages: AsyncIterable<WatchWorkerResponse>): AsyncIterable<WatchWorkerResponse> {
    for await (const message of messages) {
      yield message;
      if (message.heartbeat) return;
    }
  }
  return { ...response, message: untilHeartbeat(response.message as AsyncIterable<WatchWorkerResponse>) } as typeof response;
};

beforeAll(async () => {
  setup = await startBackendWithRemote({
    embedded: await createRuntime({ logger: silentLogger, runtimeId: "emb" }),
    remote: await createRuntime({ logger: silentLogger, runtimeId: "rs", heartbeatIntervalMs: 100 }),
    remoteServer: { interceptors: [endAfterHeartbeat] },
    // A client relayed on its own stream also starts the worker's shared upstream: it closes at once without a reader.
    backend: { heartbeatMs: 100, workerWatchLingerMs: 0 },
  });
});

afterAll(async () => {
  for (const session of sessions.splice(0)) session.abort();
  await setup?.close();
});

/** Clients of the Backend speaking Connect with JSON (the decoded relay). */
function jsonClients(): Clients {
  const baseUrl = `http://${setup.backendServer.h2Address}`;
  const sessionManager = new Http2SessionManager(baseUrl);
  sessions.push(sessionManager);
  return clientsFor(createConnectTransport({ baseUrl, httpVersion: "2", sessionManager, useBinaryFormat: false }));
}

describe("a relayed WatchWorker whose upstream ends after each heartbeat", () => {
  it.each([
    ["the shared upstream", false],
    ["a client's own, decoded", true],
  ])("is re-opened with growing backoff (%s)", async (_, ownRelay) => {
    const clients = setup.clients("grpc");
    const worker = (await clients.catalog.createWorker({ runtimeId: "rs" })).worker?.ref as WorkerRef;
    // A cursor no shared watch holds (none is open for this worker) makes the Backend relay the client on its own.
    const cursor = ownRelay ? await firstCursor(setup.remoteClients("grpc"), worker) : "";
    const watch = new WorkerWatchReader(ownRelay ? jsonClients() : clients, worker, cursor);
    try {
      await eventually(() => watch.messages.length > 0, 5_000, "the watch's first message");
      if (!ownRelay) expect(setup.backend.workerWatch("rs", worker.workerId)).toBeDefined();
      const from = opens.get(worker.workerId) ?? 0;
      await new Promise((resolve) => setTimeout(resolve, 3_000));
      const reopened = (opens.get(worker.workerId) ?? 0) - from;
      // Each stream lives ~100 ms (to its heartbeat). 100, 160, 256, 410, 655, 1049 ms of backoff (±20 %)
      // fit 5-7 re-opens in 3 s; reset to 100 ms after each heartbeat they were about 13.
      expect(reopened).toBeGreaterThanOrEqual(2);
      expect(reopened).toBeLessThanOrEqual(8);
      // The client was kept alive meanwhile: its stream never ended.
      expect(watch.ended).toBeUndefined();
    } finally {
      watch.close();
    }
  });
});

/** The cursor of the worker's snapshot, read from the remote directly (so no shared watch holds it). */
async function firstCursor(clients: Clients, worker: WorkerRef): Promise<string> {
  const controller = new AbortController();
  try {
    for await (const message of clients.observation.watchWorker({ worker }, { signal: controller.signal })) {
      return message.snapshot?.cursor ?? "";
    }
    return "";
  } finally {
    controller.abort();
  }
}
