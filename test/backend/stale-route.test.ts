import { createClient, type Client, type Interceptor } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RuntimeHealth } from "../../gen/worker_runtime/v1/backend_pb.js";
import { RuntimeRegistry } from "../../gen/worker_runtime/v1/runtime_registry_pb.js";
import { createRuntime, silentLogger } from "../../src/runtime/index.js";
import { type RuntimeServer, startRuntimeServer } from "../../src/server/index.js";
import { type BackendWithRemote, startBackendWithRemote } from "../support/backend-with-remote.js";
import { type Clients, eventually } from "../support/harness.js";

/**
 * What a call on a runtime's old route ends with, after UpdateRuntime
 * re-pointed it, belongs to the old route: it is not counted against the
 * new one, nor recorded as its state. The old runtime is real and hangs
 * (its server stalls GetRuntime); the Backend's per-runtime interceptor
 * (BackendOptions.runtimeInterceptors) retries a failed call once after a
 * while, so the old calls, cut by the re-point, end after the new route is
 * READY, refused by the old route's sealed transport. That UNAVAILABLE used
 * to abort the new route's attempt, count a failed attempt and show it
 * UNAVAILABLE.
 */

/** How long the Backend's interceptor waits before it retries a failed call. */
const LATE_MS = 2_000;

let served: BackendWithRemote;
let registry: Client<typeof RuntimeRegistry>;
let clients: Clients;
const sessions: Http2SessionManager[] = [];
const ownServers: RuntimeServer[] = [];
/** The old runtime's server holds GetRuntime calls while set. */
let stalling = false;
let stalled = 0;
const release = new AbortController();

const stallGetRuntime: Interceptor = (next) => async (request) => {
  if (stalling && request.method.name === "GetRuntime") {
    stalled++;
    await new Promise<void>((resolve) => {
      release.signal.addEventListener("abort", () => resolve());
      request.signal.addEventListener("abort", () => resolve());
    });
  }
  return next(request);
};

/** A client retry, as an operator's interceptor may make one: a failed call is tried once more after a while. */
const retryLater: Interceptor = (next) => async (request) => {
  try {
    return await next(request);
  } catch {
    await new Promise((resolve) => setTimeout(resolve, LATE_MS));
    return await next(request);
  }
};

beforeAll(async () => {
  served = await startBackendWithRemote({
    embedded: await createRuntime({ logger: silentLogger, runtimeId: "emb" }),
    remote: await createRuntime({ logger: silentLogger, runtimeId: "rs", displayName: "old" }),
    remoteServer: { interceptors: [stallGetRuntime] },
    backend: {
      backoff: { initialMs: 50, maxMs: 500 },
      callTimeoutMs: 10_000,
      fanoutTimeoutMs: 10_000,
      runtimeInterceptors: () => [retryLater],
    },
  });
  const session = new Http2SessionManager(`http://${served.backendServer.h2Address}`);
  sessions.push(session);
  registry = createClient(
    RuntimeRegistry,
    createGrpcTransport({ baseUrl: `http://${served.backendServer.h2Address}`, sessionManager: session }),
  );
  clients = served.clients("grpc");
});

afterAll(async () => {
  release.abort();
  for (const session of sessions.splice(0)) session.abort();
  await served?.close();
  for (const server of ownServers) await server.close(0);
});

describe("calls that end on a runtime's old route after UpdateRuntime", () => {
  it("are not counted against the new route, nor recorded as its summary", async () => {
    const connection = served.backend.directory.get("rs");
    if (!connection) throw new Error("rs is not registered");
    const healths: RuntimeHealth[] = [];
    connection.onChange(() => {
      if (healths.at(-1) !== connection.health) healths.push(connection.health);
    });

    stalling = true;
    const settled = (call: Promise<unknown>): Promise<number> =>
      call.then(
        () => performance.now(),
        () => performance.now(),
      );
    // A routed call and a registry summary refresh, both hanging on the old runtime.
    const routed = settled(clients.management.getRuntime({ runtimeId: "rs" }));
    const summary = settled(registry.getRegisteredRuntime({ runtimeId: "rs" }));
    await eventually(() => stalled === 2, 5_000, "both calls held by the old runtime");

    const moved = await startRuntimeServer({
      runtime: await createRuntime({ logger: silentLogger, runtimeId: "rs", displayName: "new" }),
      host: "127.0.0.1",
      port: 0,
      logger: silentLogger,
    });
    ownServers.push(moved);
    await registry.updateRuntime({ runtimeId: "rs", url: `http://${moved.h2Address}` });
    await eventually(() => connection.health === RuntimeHealth.READY, 5_000, "rs READY at its new address");
    const readyAt = performance.now();
    const readyFrom = healths.length - 1;

    // The old calls end after the new route is READY (the test's premise)...
    expect(await routed).toBeGreaterThan(readyAt);
    expect(await summary).toBeGreaterThan(readyAt);
    await new Promise((resolve) => setTimeout(resolve, 200));
    // ...and leave it as it was: READY throughout, no failed attempt, the new runtime's summary.
    expect(healths.slice(readyFrom).map((h) => RuntimeHealth[h])).toEqual(["READY"]);
    expect(connection.snapshot.failedAttempts).toBe(0);
    expect(connection.snapshot.summary?.displayName).toBe("new");
  });
});
