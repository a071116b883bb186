import { Code, ConnectError } from "@connectrpc/connect";
import { Http2SessionManager } from "@connectrpc/connect-node";
import { mkdir, mkdtemp, realpath, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BusyPolicy } from "../../gen/worker_runtime/v1/common_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { createPinoLogger } from "../../src/cli/pino-logger.js";
import { createOpenAIBackend } from "../../src/engine/index.js";
import { createRuntime, type Runtime } from "../../src/runtime/index.js";
import { type RuntimeServer, startRuntimeServer } from "../../src/server/index.js";
import { startFakeOpenAI, type FakeOpenAI } from "../support/fake-openai.js";
import { clientsFor, eventually, makeTransport, type Clients } from "../support/harness.js";
import { logCapture, type LogLine } from "../support/log-lines.js";
import { reply } from "../support/openai-chunks.js";

/**
 * The CLI's pino logger behind a real server and the OpenAI backend (the
 * fake provider): every line is JSON carrying the request id (the caller's,
 * echoed back), the runtime id and, on run lines, the worker and run ids;
 * model text and tool payloads are redacted; a client cancelling a watch
 * logs nothing above debug.
 */

const ANSWER_MARK = "answer-mark-7f1c2a";
const TOOL_ARG_MARK = "tool-arg-mark-93be01";
const KEY = "sk-request-logging-key-5d2e";

let fake: FakeOpenAI;
let base: string;
let runtime: Runtime;
let server: RuntimeServer;
let session: Http2SessionManager;
let clients: Clients;
const capture = logCapture();

beforeAll(async () => {
  fake = await startFakeOpenAI();
  base = await realpath(await mkdtemp(join(tmpdir(), "request-logging-")));
  await mkdir(join(base, "ws"));
  await writeFile(join(base, "ws", "seed.txt"), "seed");
  const fields: Record<string, string> = {};
  const logger = createPinoLogger({ level: "debug", payloads: false, destination: capture.destination, process: fields });
  runtime = await createRuntime({
    logger,
    executionBackend: createOpenAIBackend({ apiKey: KEY, baseURL: fake.baseURL }),
    workspaceRoots: { work: base },
  });
  fields["runtime_id"] = runtime.runtimeId;
  server = await startRuntimeServer({ runtime, host: "127.0.0.1", port: 0, logger });
  session = new Http2SessionManager(`http://${server.h2Address}`);
  clients = clientsFor(makeTransport("connect", `http://${server.h2Address}`, session));
});

afterAll(async () => {
  session?.abort();
  await server?.close(0);
  await fake?.close();
  if (base) await rm(base, { recursive: true, force: true });
});

const linesWith = (message: string): LogLine[] => capture.lines.filter((line) => line.message === message);

describe("request logging", () => {
  it("tags an RPC's lines and its run's lines with the request, runtime, worker and run ids, and echoes the request id", async () => {
    const { worker } = await clients.catalog.createWorker({
      runtimeId: runtime.runtimeId,
      capabilities: ["fs.write"],
      workspace: { root: "work", path: "ws" },
    });
    const ref = worker?.ref;
    if (!ref) throw new Error("no worker");
    fake.enqueue(
      reply({ toolCalls: [{ id: "c1", name: "write_file", arguments: JSON.stringify({ path: "out.txt", content: TOOL_ARG_MARK }) }] }),
      reply({ text: `done: ${ANSWER_MARK}` }),
    );
    let echoed: string | null = null;
    const { run } = await clients.interaction.sendInput(
      { worker: ref, input: { text: "write it" } },
      { headers: { "x-request-id": "req-logging-0001" }, onHeader: (header) => (echoed = header.get("x-request-id")) },
    );
    expect(echoed).toBe("req-logging-0001");
    const runId = run?.runId ?? "";
    await eventually(
      async () => (await clients.interaction.getRun({ worker: ref, runId })).run?.status === RunStatus.COMPLETED,
      10_000,
      "run completed",
    );

    const ids = { runtime_id: runtime.runtimeId, worker_id: ref.workerId, run_id: runId };
    expect(linesWith("rpc completed").find((line) => line["request_id"] === "req-logging-0001")).toMatchObject({
      level: "debug",
      rpc_method: "worker_runtime.v1.WorkerInteraction/SendInput",
      code: "OK",
      ...ids,
    });
    // The run was started by that RPC: its lines keep the request id, and name the worker and run.
    const answered = linesWith("model answered");
    expect(answered).toHaveLength(2);
    for (const line of answered) expect(line).toMatchObject({ request_id: "req-logging-0001", ...ids, text: "[redacted]" });
    expect(linesWith("tool call ended")).toEqual([
      expect.objectContaining({ ...ids, tool: "write_file", arguments: "[redacted]", output: "[redacted]" }),
    ]);
    expect(linesWith("run executed")).toEqual([expect.objectContaining({ ...ids, outcome: "completed" })]);
    for (const line of capture.lines) {
      expect(typeof line["time"]).toBe("string");
      expect(line["runtime_id"]).toBe(runtime.runtimeId);
    }
    const all = capture.raw.join("");
    for (const secret of [ANSWER_MARK, TOOL_ARG_MARK, KEY]) expect(all).not.toContain(secret);
  });

  it("runs a queued run in the context of the call that queued it, not of the run before it", async () => {
    const { worker } = await clients.catalog.createWorker({ runtimeId: runtime.runtimeId });
    const ref = worker?.ref;
    if (!ref) throw new Error("no worker");
    fake.enqueue(reply({ text: "first" }, { delayMs: 20 }), reply({ text: "second" }));
    const send = (requestId: string) =>
      clients.interaction.sendInput(
        { worker: ref, input: { text: requestId }, busyPolicy: BusyPolicy.ENQUEUE },
        { headers: { "x-request-id": requestId } },
      );
    const first = (await send("req-queue-first")).run?.runId ?? "";
    const second = (await send("req-queue-second")).run?.runId ?? "";
    await eventually(
      async () => (await clients.interaction.getRun({ worker: ref, runId: second })).run?.status === RunStatus.COMPLETED,
      10_000,
      "second run completed",
    );
    const executed = linesWith("run executed").filter((line) => line["worker_id"] === ref.workerId);
    expect(executed).toEqual([
      expect.objectContaining({ run_id: first, request_id: "req-queue-first" }),
      expect.objectContaining({ run_id: second, request_id: "req-queue-second" }),
    ]);
  });

  it("replaces a request id it may not log with a fresh one, and echoes that", async () => {
    let echoed: string | null = null;
    await clients.management.getRuntime(
      {},
      { headers: { "x-request-id": "bad id {}" }, onHeader: (header) => (echoed = header.get("x-request-id")) },
    );
    expect(echoed).toMatch(/^[0-9a-f-]{36}$/);
    expect(linesWith("rpc completed").find((line) => line["request_id"] === echoed)).toMatchObject({
      rpc_method: "worker_runtime.v1.RuntimeManagement/GetRuntime",
    });
    expect(capture.raw.join("")).not.toContain("bad id");
  });

  it("echoes the request id on an error, and logs the caller's error at warn", async () => {
    const error = await clients.interaction
      .getRun(
        { worker: { runtimeId: runtime.runtimeId, workerId: "w-missing" }, runId: "r-1" },
        { headers: { "x-request-id": "req-logging-0002" } },
      )
      .then(
        () => undefined,
        (reason: unknown) => ConnectError.from(reason),
      );
    expect(error?.code).toBe(Code.NotFound);
    expect(error?.metadata.get("x-request-id")).toBe("req-logging-0002");
    const failed = linesWith("rpc failed").find((line) => line["request_id"] === "req-logging-0002");
    expect(failed).toMatchObject({ level: "warn", code: "NotFound", worker_id: "w-missing", run_id: "r-1" });
  });

  it("bounds the worker and run ids it copies from a request into the log (a caller can send any length)", async () => {
    const huge = "w".repeat(100_000);
    await clients.interaction
      .getRun(
        { worker: { runtimeId: runtime.runtimeId, workerId: huge }, runId: huge },
        { headers: { "x-request-id": "req-logging-huge" } },
      )
      .catch(() => undefined);
    const failed = linesWith("rpc failed").find((line) => line["request_id"] === "req-logging-huge");
    expect(failed).toBeDefined();
    expect(String(failed?.["worker_id"]).length).toBeLessThan(200);
    expect(String(failed?.["run_id"]).length).toBeLessThan(200);
    expect(String(failed?.["worker_id"]).startsWith("www")).toBe(true);
    expect(capture.raw.every((line) => line.length < 10_000)).toBe(true);
  });

  it("logs a client cancelling a watch at debug, never as warn or error", async () => {
    const before = capture.lines.length;
    const { worker } = await clients.catalog.createWorker({ runtimeId: runtime.runtimeId });
    const abort = new AbortController();
    const stream = clients.observation.watchWorker(
      { worker: worker?.ref },
      { signal: abort.signal, headers: { "x-request-id": "req-watch-1" } },
    );
    await expect(
      (async () => {
        for await (const _ of stream) abort.abort();
      })(),
    ).rejects.toThrow();
    await eventually(() => runtime.stats().subscriptions === 0, 5_000, "the watch released");
    await eventually(() => capture.lines.some((line) => line["request_id"] === "req-watch-1"), 5_000, "the watch's completion logged");
    const watchLines = capture.lines.filter((line) => line["request_id"] === "req-watch-1");
    expect(watchLines.map((line) => line.level)).toEqual(["debug"]);
    expect(watchLines[0]?.["code"]).toBe("Canceled");
    expect(capture.lines.slice(before).filter((line) => line.level === "warn" || line.level === "error")).toEqual([]);
  });
});
