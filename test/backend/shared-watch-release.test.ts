import { create } from "@bufbuild/protobuf";
import * as http2 from "node:http2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RuntimeHealth } from "../../gen/worker_runtime/v1/backend_pb.js";
import { CreateWorkerRequestSchema } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { createBackend, type Backend } from "../../src/backend/index.js";
import { createRuntime, silentLogger } from "../../src/runtime/index.js";
import { startRuntimeServer, type RuntimeServer } from "../../src/server/index.js";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { eventually, startHarness, type Harness } from "../support/harness.js";
import { replyWith, ScriptedBackend } from "../support/scripted-backend.js";

/**
 * A browser-like client of the Backend's shared WatchRuntime (the Connect
 * protocol, binary or JSON) that stops reading, so its HTTP/2 flow-control
 * window fills and the Backend's write waits, and then leaves: its place
 * among the shared watch's readers is released, even though connect-node
 * never finishes that write nor resumes the handler (CONVENTIONS.md: a
 * streaming handler can outlive its client). The client is a plain
 * node:http2 stream because it must stop reading at the HTTP/2 level (the
 * generated client reads ahead into its own buffers). A real runtime server
 * and the Backend on its own port.
 */
let harness: Harness;
let backend: Backend;
let server: RuntimeServer;

beforeAll(async () => {
  // A run's reply: 300,000 characters in 150 deltas, far more bytes than a stream's flow-control window.
  harness = await startHarness({ runtimeId: "rs", executionBackend: new ScriptedBackend(replyWith("x".repeat(300_000), 150)) });
  const embedded = await createRuntime({ logger: silentLogger, runtimeId: "emb" });
  backend = createBackend({
    runtime: embedded,
    logger: silentLogger,
    remotes: [{ runtimeId: "rs", url: harness.baseUrl }],
    workerWatchLingerMs: 100,
  });
  server = await startRuntimeServer({ runtime: embedded, routes: backend.routes, host: "127.0.0.1", port: 0, logger: silentLogger });
  await eventually(() => backend.directory.get("rs")?.health === RuntimeHealth.READY, 10_000, "READY");
  await eventually(() => harness.runtime.stats().subscriptions === 1, 10_000, "the shared upstream watch");
});

afterAll(async () => {
  backend?.close();
  await server?.close(0);
  await harness?.close();
});

/** Workers with large labels: a few make more bytes than a stream's flow-control window. */
async function createLargeWorkers(count: number): Promise<void> {
  const labels: Record<string, string> = {};
  for (let i = 0; i < 32; i++) labels[`k${i}`] = "x".repeat(256);
  for (let i = 0; i < count; i++) await harness.runtime.createWorker(create(CreateWorkerRequestSchema, { runtimeId: "rs", labels }));
}

/** A WatchRuntime of "rs" over the Connect protocol that reads its first bytes, then no more. */
function stalledWatch(session: http2.ClientHttp2Session, json: boolean): http2.ClientHttp2Stream {
  const body = json ? Buffer.from(JSON.stringify({ runtimeId: "rs" })) : Buffer.from([0x0a, 0x02, 0x72, 0x73]); // runtime_id "rs"
  const envelope = Buffer.alloc(5);
  envelope.writeUInt32BE(body.length, 1);
  const stream = session.request({
    ":method": "POST",
    ":path": "/worker_runtime.v1.WorkerObservation/WatchRuntime",
    "content-type": json ? "application/connect+json" : "application/connect+proto",
  });
  stream.end(Buffer.concat([envelope, body]));
  stream.once("data", () => stream.pause());
  return stream;
}

describe("a shared WatchRuntime client that stops reading, then leaves", () => {
  for (const json of [false, true]) {
    for (const leaves of ["cancels its stream", "drops its connection"] as const) {
      it(`is released (Connect ${json ? "JSON" : "binary"}, ${leaves})`, async () => {
        const shared = backend.runtimeWatch("rs");
        const before = shared?.readerCount ?? 0;
        const session = http2.connect(`http://${server.h2Address}`);
        const stream = stalledWatch(session, json);
        await eventually(() => shared?.readerCount === before + 1, 10_000, "the client served from the shared watch");
        await createLargeWorkers(60);
        await new Promise((resolve) => setTimeout(resolve, 300)); // the Backend writes until the window is full
        if (leaves === "cancels its stream") stream.close(http2.constants.NGHTTP2_CANCEL);
        else session.destroy();
        await eventually(() => shared?.readerCount === before, 5_000, "the reader released");
        expect(shared?.readerCount).toBe(before);
        session.destroy();
      });
    }
  }
});

/** A WatchWorker over the Connect protocol that reads its first bytes, then no more. */
function stalledWorkerWatch(session: http2.ClientHttp2Session, json: boolean, worker: WorkerRef): http2.ClientHttp2Stream {
  const field = (no: number, data: Buffer) => Buffer.concat([Buffer.from([(no << 3) | 2, data.length]), data]);
  const ref = Buffer.concat([field(1, Buffer.from(worker.runtimeId)), field(2, Buffer.from(worker.workerId))]);
  const body = json ? Buffer.from(JSON.stringify({ worker: { runtimeId: worker.runtimeId, workerId: worker.workerId } })) : field(1, ref);
  const envelope = Buffer.alloc(5);
  envelope.writeUInt32BE(body.length, 1);
  const stream = session.request({
    ":method": "POST",
    ":path": "/worker_runtime.v1.WorkerObservation/WatchWorker",
    "content-type": json ? "application/connect+json" : "application/connect+proto",
  });
  stream.end(Buffer.concat([envelope, body]));
  stream.once("data", () => stream.pause());
  return stream;
}

describe("a client of a worker's shared WatchWorker that stops reading, then leaves", () => {
  for (const json of [false, true]) {
    for (const leaves of ["cancels its stream", "drops its connection"] as const) {
      it(`is released, and the upstream closed after the linger (Connect ${json ? "JSON" : "binary"}, ${leaves})`, async () => {
        const created = await harness.runtime.createWorker(create(CreateWorkerRequestSchema, { runtimeId: "rs" }));
        const worker = created.worker?.ref as WorkerRef;
        const session = http2.connect(`http://${server.h2Address}`);
        const stream = stalledWorkerWatch(session, json, worker);
        await eventually(
          () => backend.workerWatch("rs", worker.workerId)?.readerCount === 1,
          10_000,
          "the client served from the shared watch",
        );
        const shared = backend.workerWatch("rs", worker.workerId);
        await harness.connect("grpc").interaction.sendInput({ worker, input: { text: "a long answer" } });
        await new Promise((resolve) => setTimeout(resolve, 300)); // the Backend writes until the window is full
        if (leaves === "cancels its stream") stream.close(http2.constants.NGHTTP2_CANCEL);
        else session.destroy();
        await eventually(() => shared?.readerCount === 0, 5_000, "the reader released");
        await eventually(() => backend.workerWatch("rs", worker.workerId) === undefined, 5_000, "the upstream closed");
        session.destroy();
      });
    }
  }
});
