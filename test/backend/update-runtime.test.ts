import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RuntimeHealth } from "../../gen/worker_runtime/v1/backend_pb.js";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { RuntimeRegistry } from "../../gen/worker_runtime/v1/runtime_registry_pb.js";
import { createRuntime, type Runtime, silentLogger } from "../../src/runtime/index.js";
import { type RuntimeServer, startRuntimeServer } from "../../src/server/index.js";
import { type BackendWithRemote, startBackendWithRemote } from "../support/backend-with-remote.js";
import { type FakeOpenAI, startFakeOpenAI } from "../support/fake-openai.js";
import { createFileStoreRuntime } from "../support/file-store-runtime.js";
import { expectError } from "../support/errors.js";
import { type Clients, eventually, runToEnd } from "../support/harness.js";
import { reply } from "../support/openai-chunks.js";
import { WorkerWatchReader } from "./worker-watch-reader.js";

/**
 * UpdateRuntime re-points a registered remote runtime in place: a runtime
 * that moved to another port (its store with it) is used again at the new
 * address, and the watches the Backend relays from it never end: they resume
 * from their cursors through the new connection, so a client sees the runs
 * made after the move with no gap and no second copy. Real servers on
 * 127.0.0.1, the generated clients over HTTP/2, a fake provider.
 */

const HEARTBEAT_MS = 200;

let dir: string;
let fake: FakeOpenAI;
let served: BackendWithRemote;
let registry: Client<typeof RuntimeRegistry>;
let clients: Clients;
const sessions: Http2SessionManager[] = [];
/** Servers this test starts itself (the moved runtime's), closed at the end. */
const ownServers: RuntimeServer[] = [];

function remoteRuntime(): Promise<Runtime> {
  return createFileStoreRuntime({
    runtimeId: "rs",
    dir,
    providerBaseURL: fake.baseURL,
    heartbeatIntervalMs: HEARTBEAT_MS,
    segmentBytes: 64 * 1024,
  });
}

function registryAt(address: string): Client<typeof RuntimeRegistry> {
  const session = new Http2SessionManager(`http://${address}`);
  sessions.push(session);
  return createClient(RuntimeRegistry, createGrpcTransport({ baseUrl: `http://${address}`, sessionManager: session }));
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "update-runtime-"));
  fake = await startFakeOpenAI();
  fake.setFallback(reply({ text: "ok" }));
  served = await startBackendWithRemote({
    embedded: await createRuntime({ logger: silentLogger, runtimeId: "emb" }),
    remote: await remoteRuntime(),
    backend: { heartbeatMs: HEARTBEAT_MS, backoff: { initialMs: 50, maxMs: 500 } },
  });
  registry = registryAt(served.backendServer.h2Address);
  clients = served.clients("grpc");
});

afterAll(async () => {
  for (const session of sessions.splice(0)) session.abort();
  await served?.close();
  for (const server of ownServers) await server.close(0);
  await fake?.close();
  await rm(dir, { recursive: true, force: true });
});

describe("UpdateRuntime", () => {
  it("re-points a runtime that moved to another port, and the watch relayed from it goes on without a gap", async () => {
    const { worker } = await clients.catalog.createWorker({ runtimeId: "rs", displayName: "mover" });
    const ref: WorkerRef = { $typeName: "worker_runtime.v1.WorkerRef", runtimeId: "rs", workerId: worker?.ref?.workerId ?? "" };
    const before = await runToEnd(clients, ref, "before the move");
    expect(before?.status).toBe(RunStatus.COMPLETED);
    const watch = new WorkerWatchReader(clients, ref);
    await eventually(() => watch.messages.length > 0, 10_000, "the watch's snapshot");

    // The runtime stops at its old port and comes back at another, with its store.
    const oldUrl = `http://${served.remoteServer.h2Address}`;
    await served.remoteServer.close(0);
    await eventually(() => served.backend.directory.get("rs")?.health !== RuntimeHealth.READY, 10_000, "rs away");
    const moved = await startRuntimeServer({ runtime: await remoteRuntime(), host: "127.0.0.1", port: 0, logger: silentLogger });
    ownServers.push(moved);
    const newUrl = `http://${moved.h2Address}`;
    expect(newUrl).not.toBe(oldUrl);

    const { runtime } = await registry.updateRuntime({ runtimeId: "rs", url: newUrl });
    // The answer names no address (browsers read this API) and shows the new connection starting or started.
    expect(runtime?.endpoint).toBe("");
    expect([RuntimeHealth.CONNECTING, RuntimeHealth.READY]).toContain(runtime?.health);
    // Its attempt starts now: no wait left over from the old address's backoff.
    expect(runtime?.nextAttemptAt).toBeUndefined();
    await eventually(() => served.backend.directory.get("rs")?.health === RuntimeHealth.READY, 10_000, "rs READY at its new port");
    expect(served.backend.directory.get("rs")?.endpoint).toBe(newUrl);

    const after = await runToEnd(clients, ref, "after the move");
    expect(after?.status).toBe(RunStatus.COMPLETED);
    await eventually(
      () =>
        watch.events.some(
          (e) => e.kind.case === "runChanged" && e.kind.value.runId === after?.runId && e.kind.value.status === RunStatus.COMPLETED,
        ),
      10_000,
      "the run after the move, on the watch opened before it",
    );
    expect(watch.ended).toBeUndefined();
    watch.expectDurableInOrder("the relayed watch across the move");
    watch.close();

    // AddRuntime now treats the new url as the registered one, and the old as another.
    const again = await registry.addRuntime({ runtimeId: "rs", url: newUrl });
    expect(again.runtime?.health).toBe(RuntimeHealth.READY);
    const old = await expectError(() => registry.addRuntime({ runtimeId: "rs", url: oldUrl }));
    expect(old.detail?.reason).toBe(ErrorReason.RUNTIME_ALREADY_REGISTERED);
    const { runtime: listed } = await registry.getRegisteredRuntime({ runtimeId: "rs" });
    expect([listed?.health, listed?.failedAttempts]).toEqual([RuntimeHealth.READY, 0]);

    // The same update again (a retry, a second `runtimes update`) changes nothing: the connection stays up.
    const connection = served.backend.directory.get("rs");
    const transport = connection?.transport;
    const repeated = await registry.updateRuntime({ runtimeId: "rs", url: newUrl });
    expect(repeated.runtime?.health).toBe(RuntimeHealth.READY);
    expect(connection?.transport).toBe(transport);
  });
});

describe("UpdateRuntime's credentials", () => {
  let tokened: BackendWithRemote;
  let tokenedRegistry: Client<typeof RuntimeRegistry>;

  beforeAll(async () => {
    tokened = await startBackendWithRemote({
      embedded: await createRuntime({ logger: silentLogger, runtimeId: "emb-t" }),
      remote: await createRuntime({ logger: silentLogger, runtimeId: "rt-t" }),
      remoteToken: "the-right-token",
      backend: { backoff: { initialMs: 50, maxMs: 500 } },
    });
    tokenedRegistry = registryAt(tokened.backendServer.h2Address);
  });

  afterAll(async () => {
    await tokened?.close();
  });

  it("replaces the token: a wrong one shows UNAUTHENTICATED, the right one READY again, at the same url", async () => {
    const url = `http://${tokened.remoteServer.h2Address}`;
    const connection = tokened.backend.directory.get("rt-t");
    await tokenedRegistry.updateRuntime({ runtimeId: "rt-t", url, bearerToken: "a-wrong-token" });
    await eventually(() => connection?.health === RuntimeHealth.UNAUTHENTICATED, 10_000, "rt-t UNAUTHENTICATED");
    expect(connection?.hasCredentials).toBe(true);
    await tokenedRegistry.updateRuntime({ runtimeId: "rt-t", url });
    await eventually(
      () => connection?.health === RuntimeHealth.UNAUTHENTICATED && connection.snapshot.failedAttempts > 0,
      10_000,
      "no token",
    );
    expect(connection?.hasCredentials).toBe(false);
    await tokenedRegistry.updateRuntime({ runtimeId: "rt-t", url, bearerToken: "the-right-token" });
    await eventually(() => connection?.health === RuntimeHealth.READY, 10_000, "rt-t READY with the right token");
    // The same registration throughout: nothing was removed and added.
    expect(tokened.backend.directory.get("rt-t")).toBe(connection);
  });
});
