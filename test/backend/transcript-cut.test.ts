import type { Http2SessionManager } from "@connectrpc/connect-node";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { type Runtime, silentLogger } from "../../src/runtime/index.js";
import { type RuntimeServer, startRuntimeServer } from "../../src/server/index.js";
import { type BackendWithRemote, startBackendWithRemote } from "../support/backend-with-remote.js";
import { damageActiveSegmentMiddle } from "../support/damaged-segment.js";
import { type FakeOpenAI, startFakeOpenAI } from "../support/fake-openai.js";
import { createFileStoreRuntime } from "../support/file-store-runtime.js";
import { type Clients, clientsAt, runToEnd } from "../support/harness.js";
import { replyChunks } from "../support/openai-chunks.js";

/**
 * The Backend relays ReadTranscript's `cut` (a transcript that damage found
 * at open cut short) unchanged, from a remote runtime and from the embedded
 * one, through gRPC, Connect JSON (the relay's decoded path) and the
 * console's transport: a browser must not take the readable part for the
 * whole conversation either.
 */

let dir: string;
let fake: FakeOpenAI;
let served: BackendWithRemote;
let embeddedServer: RuntimeServer;
const sessions: Http2SessionManager[] = [];
const damaged = new Map<string, WorkerRef>();

function fileRuntime(runtimeId: string): Promise<Runtime> {
  // One segment holds the whole transcript, so the open scans it and finds the damage.
  return createFileStoreRuntime({ runtimeId, dir, providerBaseURL: fake.baseURL, heartbeatIntervalMs: 200, segmentBytes: 1 << 20 });
}

/** A worker with a few answered inputs, its transcript then damaged in the middle while the runtime is down. */
async function populate(runtimeId: string): Promise<WorkerRef> {
  const runtime = await fileRuntime(runtimeId);
  const server = await startRuntimeServer({ runtime, host: "127.0.0.1", port: 0, logger: silentLogger });
  const clients = clientsAt(server.h2Address, "grpc", sessions);
  const worker = (await clients.catalog.createWorker({ runtimeId })).worker?.ref as WorkerRef;
  for (let i = 0; i < 4; i++) expect((await runToEnd(clients, worker, `message ${i}`))?.status).toBe(RunStatus.COMPLETED);
  for (const session of sessions.splice(0)) session.abort();
  await server.close(0);
  await damageActiveSegmentMiddle(path.join(dir, runtimeId, "workers", worker.workerId));
  return worker;
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "wr-backend-cut-"));
  fake = await startFakeOpenAI();
  fake.setFallback({ kind: "stream", chunks: replyChunks({ text: "ok", usage: { prompt: 1, completion: 1 } }) });
  damaged.set("rs", await populate("rs"));
  damaged.set("emb", await populate("emb"));
  const embedded = await fileRuntime("emb");
  served = await startBackendWithRemote({ remote: await fileRuntime("rs"), embedded });
  embeddedServer = await startRuntimeServer({ runtime: embedded, host: "127.0.0.1", port: 0, logger: silentLogger });
}, 60_000);

afterAll(async () => {
  for (const session of sessions.splice(0)) session.abort();
  await served?.close();
  await embeddedServer?.close(0);
  await fake?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe.each(["rs", "emb"])("ReadTranscript of a cut transcript through the Backend (runtime %s)", (runtimeId) => {
  it.each(["backend grpc", "backend connect", "console"] as const)("%s: carries the runtime's cut unchanged", async (route) => {
    const worker = damaged.get(runtimeId) as WorkerRef;
    const direct = runtimeId === "rs" ? served.remoteClients("grpc") : clientsAt(embeddedServer.h2Address, "grpc", sessions);
    const through: Clients = route === "console" ? served.consoleClients() : served.clients(route === "backend grpc" ? "grpc" : "connect");
    const want = await direct.observation.readTranscript({ worker });
    expect(want.cut?.reason).toBe(ErrorReason.WORKER_FAILED);
    expect(want.cut?.readableThroughSeq).toBe(want.lastSeq);
    const got = await through.observation.readTranscript({ worker });
    expect(got.cut).toEqual(want.cut);
    expect([got.entries.length, got.hasMore, got.lastSeq]).toEqual([want.entries.length, false, want.lastSeq]);
  });
});
