import { Http2SessionManager } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RuntimeHealth } from "../../gen/worker_runtime/v1/backend_pb.js";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { createBackend, type Backend } from "../../src/backend/index.js";
import { createPinoLogger } from "../../src/cli/pino-logger.js";
import { createRuntime, type Runtime } from "../../src/runtime/index.js";
import { startRuntimeServer, type RuntimeServer } from "../../src/server/index.js";
import { clientsFor, eventually, makeTransport, type Clients } from "../support/harness.js";
import { logCapture, type LogLine } from "../support/log-lines.js";
import { ScriptedBackend } from "../support/scripted-backend.js";

/**
 * A Backend passes the caller's request id on to the Runtime it routes a
 * call to — unary calls, a relayed StreamInput, a watch relayed on its own
 * stream, a ListWorkers fan-out — so one id finds the call in both logs,
 * and a run the call starts logs with it there; a run on the Backend's
 * embedded Runtime too. The id is passed explicitly (the served call's
 * context values), so the Backend's own calls (health checks, its shared
 * runtime watch, a worker's shared watch that serves many clients) never
 * carry a caller's id. Real servers on port 0,
 * the CLI's pino logger.
 */

const remoteLog = logCapture();
const backendLog = logCapture();
let remote: { runtime: Runtime; server: RuntimeServer };
let backend: Backend;
let backendServer: RuntimeServer;
let session: Http2SessionManager;
let client: Clients;

beforeAll(async () => {
  const remoteLogger = createPinoLogger({ level: "debug", payloads: false, destination: remoteLog.destination });
  const remoteRuntime = await createRuntime({ logger: remoteLogger, runtimeId: "rs", executionBackend: new ScriptedBackend() });
  remote = {
    runtime: remoteRuntime,
    server: await startRuntimeServer({ runtime: remoteRuntime, host: "127.0.0.1", port: 0, logger: remoteLogger }),
  };
  const backendLogger = createPinoLogger({ level: "debug", payloads: false, destination: backendLog.destination });
  const embedded = await createRuntime({ logger: backendLogger, runtimeId: "emb", executionBackend: new ScriptedBackend() });
  backend = createBackend({
    runtime: embedded,
    logger: backendLogger,
    remotes: [{ runtimeId: "rs", url: `http://${remote.server.h2Address}` }],
    workerWatchLingerMs: 100,
  });
  backendServer = await startRuntimeServer({
    runtime: embedded,
    routes: backend.routes,
    host: "127.0.0.1",
    port: 0,
    logger: backendLogger,
  });
  session = new Http2SessionManager(`http://${backendServer.h2Address}`);
  client = clientsFor(makeTransport("grpc", `http://${backendServer.h2Address}`, session));
  await eventually(() => backend.directory.get("rs")?.health === RuntimeHealth.READY, 10_000, "rs READY");
});

afterAll(async () => {
  session?.abort();
  backend?.close();
  await backendServer?.close(0);
  await remote?.server.close(0);
});

const withId = (lines: LogLine[], requestId: string, message: string): LogLine[] =>
  lines.filter((line) => line["request_id"] === requestId && line.message === message);

async function newWorker(runtimeId: string): Promise<WorkerRef> {
  const { worker } = await client.catalog.createWorker({ runtimeId });
  if (!worker?.ref) throw new Error("no worker");
  return worker.ref;
}

async function completed(worker: WorkerRef, runId: string): Promise<void> {
  await eventually(
    async () => (await client.interaction.getRun({ worker, runId })).run?.status === RunStatus.COMPLETED,
    10_000,
    `run ${runId} completed`,
  );
}

describe("the request id through a Backend", () => {
  it("reaches the Runtime a call is routed to, and the run it starts there", async () => {
    const worker = await newWorker("rs");
    const { run } = await client.interaction.sendInput({ worker, input: { text: "hi" } }, { headers: { "x-request-id": "req-fwd-send" } });
    const runId = run?.runId ?? "";
    await completed(worker, runId);
    const method = "worker_runtime.v1.WorkerInteraction/SendInput";
    expect(withId(backendLog.lines, "req-fwd-send", "rpc completed")).toEqual([expect.objectContaining({ rpc_method: method })]);
    expect(withId(remoteLog.lines, "req-fwd-send", "rpc completed")).toEqual([expect.objectContaining({ rpc_method: method })]);
    expect(withId(remoteLog.lines, "req-fwd-send", "run executed")).toEqual([
      expect.objectContaining({ rpc_method: method, worker_id: worker.workerId, run_id: runId }),
    ]);
  });

  it("reaches a run on the embedded Runtime, whose call the Backend logs once", async () => {
    const worker = await newWorker("emb");
    const { run } = await client.interaction.sendInput({ worker, input: { text: "hi" } }, { headers: { "x-request-id": "req-emb-send" } });
    const runId = run?.runId ?? "";
    await completed(worker, runId);
    expect(withId(backendLog.lines, "req-emb-send", "run executed")).toEqual([
      expect.objectContaining({ rpc_method: "worker_runtime.v1.WorkerInteraction/SendInput", worker_id: worker.workerId, run_id: runId }),
    ]);
    expect(withId(backendLog.lines, "req-emb-send", "rpc completed")).toHaveLength(1);
  });

  it("goes on with a relayed StreamInput, a relayed watch and a ListWorkers fan-out", async () => {
    const worker = await newWorker("rs");
    let cursor = "";
    for await (const message of client.interaction.streamInput(
      { worker, input: { text: "hi" } },
      { headers: { "x-request-id": "req-fwd-stream" } },
    )) {
      // Read to the end of the run, keeping its first durable cursor.
      cursor ||= message.events.find((event) => event.cursor !== "")?.cursor ?? "";
    }
    expect(withId(remoteLog.lines, "req-fwd-stream", "run executed")).toEqual([
      expect.objectContaining({ rpc_method: "worker_runtime.v1.WorkerInteraction/StreamInput", worker_id: worker.workerId }),
    ]);

    // A cursor from before the worker's shared watch opened: this client is relayed on a stream of its own.
    expect(cursor).not.toBe("");
    const abort = new AbortController();
    const watch = client.observation.watchWorker(
      { worker, afterCursor: cursor },
      { signal: abort.signal, headers: { "x-request-id": "req-fwd-watch" } },
    );
    await expect(
      (async () => {
        for await (const _ of watch) abort.abort();
      })(),
    ).rejects.toThrow();
    await eventually(() => remoteLog.lines.some((line) => line["request_id"] === "req-fwd-watch"), 5_000, "the relayed watch's end logged");
    expect(remoteLog.lines.filter((line) => line["request_id"] === "req-fwd-watch")).toEqual([
      expect.objectContaining({ rpc_method: "worker_runtime.v1.WorkerObservation/WatchWorker" }),
    ]);

    await client.catalog.listWorkers({}, { headers: { "x-request-id": "req-fwd-list" } });
    expect(withId(remoteLog.lines, "req-fwd-list", "rpc completed")).toEqual([
      expect.objectContaining({ rpc_method: "worker_runtime.v1.WorkerCatalog/ListWorkers" }),
    ]);
  });

  it("keeps a watch served from a worker's shared upstream watch the Backend's own call, without the caller's id", async () => {
    const worker = await newWorker("rs");
    const watchLines = () => remoteLog.lines.filter((line) => line["rpc_method"] === "worker_runtime.v1.WorkerObservation/WatchWorker");
    const before = watchLines().length;
    const abort = new AbortController();
    const watch = client.observation.watchWorker({ worker }, { signal: abort.signal, headers: { "x-request-id": "req-shared-watch" } });
    await expect(
      (async () => {
        for await (const _ of watch) abort.abort();
      })(),
    ).rejects.toThrow();
    expect(backend.workerWatch("rs", worker.workerId)?.clientsServed).toBe(1);
    // The Backend logs the client's call with its id; the shared upstream, which ends a linger after its last
    // client left, is logged by the Runtime with an id of its own.
    await eventually(() => backendLog.lines.some((line) => line["request_id"] === "req-shared-watch"), 5_000, "the client's call logged");
    await eventually(() => watchLines().length > before, 5_000, "the shared watch's end logged");
    for (const line of watchLines().slice(before)) expect(String(line["request_id"])).not.toMatch(/^req-/);
  });

  it("never rides on the Backend's own calls to a Runtime", () => {
    // Health checks and the shared WatchRuntime, made while the calls above were served, carry ids of their own.
    const background = remoteLog.lines.filter((line) => /Health\/|WatchRuntime|GetRuntime/.test(String(line["rpc_method"])));
    expect(background.length).toBeGreaterThan(0);
    for (const line of background) expect(String(line["request_id"])).not.toMatch(/^req-/);
  });
});
