import type { ConnectRouter } from "@connectrpc/connect";
import { Http2SessionManager } from "@connectrpc/connect-node";
import { ROOT_CONTEXT, trace } from "@opentelemetry/api";
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RuntimeManagement } from "../../../gen/worker_runtime/v1/runtime_management_pb.js";
import { createPinoLogger } from "../../../src/cli/pino-logger.js";
import { createRuntime, type Runtime } from "../../../src/runtime/index.js";
import { type RuntimeServer, startRuntimeServer } from "../../../src/server/index.js";
import { type InstalledTracing, installTracing } from "../../../src/telemetry/tracing/tracing-sdk.js";
import { clientsFor, eventually, makeTransport } from "../../support/harness.js";
import { logCapture } from "../../support/log-lines.js";
import { ScriptedBackend } from "../../support/scripted-backend.js";
import { startFakeOpenAI } from "../../support/fake-openai.js";
import { reply } from "../../support/openai-chunks.js";
import { createOpenAIBackend } from "../../../src/engine/index.js";

/**
 * Logs and traces meet: with tracing on, an RPC's completion line carries
 * the trace and span ids of the RPC's server span (the tracing interceptor
 * is outermost and hands its span to the logging interceptor in the call's
 * context values), and the trace id is the one the caller sent; a run's
 * lines carry the request id of the call that sent its input and the ids of
 * the run's span, and a model turn's lines those of the turn's span.
 */

const TRACE_ID = "1234567890abcdef1234567890abcdef";
const CALLER_SPAN_ID = "fedcba0987654321";

let memory: InMemorySpanExporter;
const backend = new ScriptedBackend();
let tracing: InstalledTracing;
let runtime: Runtime;
let server: RuntimeServer;
let session: Http2SessionManager;
const capture = logCapture();
let logger: ReturnType<typeof createPinoLogger>;

beforeAll(async () => {
  memory = new InMemorySpanExporter();
  tracing = installTracing({ serviceName: "log-correlation-test", spanProcessors: [new SimpleSpanProcessor(memory)] });
  logger = createPinoLogger({ level: "debug", payloads: false, destination: capture.destination, process: {} });
  runtime = await createRuntime({ logger, executionBackend: backend });
  server = await startRuntimeServer({ runtime, host: "127.0.0.1", port: 0, logger });
  session = new Http2SessionManager(`http://${server.h2Address}`);
});

afterAll(async () => {
  session?.abort();
  await server?.close(0);
  await tracing?.shutdown();
});

describe("log lines with tracing on", () => {
  it("carry the trace and span ids of the RPC's server span", async () => {
    const headers = { traceparent: `00-${TRACE_ID}-${CALLER_SPAN_ID}-01` };
    const clients = clientsFor(makeTransport("grpc", `http://${server.h2Address}`, session, headers));
    await clients.management.getRuntime({});
    const method = "worker_runtime.v1.RuntimeManagement/GetRuntime";
    const serverSpan = memory.getFinishedSpans().find((span: ReadableSpan) => span.name === method);
    if (!serverSpan) throw new Error("no server span");
    const completed = capture.lines.find((line) => line.message === "rpc completed" && line["rpc_method"] === method);
    expect(completed).toMatchObject({ trace_id: TRACE_ID, span_id: serverSpan.spanContext().spanId });
  });

  it("carry the run's span ids and its SendInput's request id on a run's lines, and give its backend the run's span", async () => {
    const headers = { traceparent: `00-${TRACE_ID}-${CALLER_SPAN_ID}-01`, "x-request-id": "req-run-1" };
    const clients = clientsFor(makeTransport("grpc", `http://${server.h2Address}`, session, headers));
    const { worker } = await clients.catalog.createWorker({ runtimeId: runtime.runtimeId });
    const { run } = await clients.interaction.sendInput({ worker: worker?.ref, input: { text: "hello" } });
    await eventually(() => capture.lines.some((line) => line.message === "run executed" && line["run_id"] === run?.runId));
    const sendInput = memory.getFinishedSpans().find((span: ReadableSpan) => span.name === "worker_runtime.v1.WorkerInteraction/SendInput");
    if (!sendInput) throw new Error("no SendInput span");
    // The backend got the run's invoke_agent span, a child of that SendInput, to parent its own spans on.
    const runSpanId = trace.getSpan(backend.requests.at(-1)?.traceContext ?? ROOT_CONTEXT)?.spanContext().spanId;
    await eventually(() => memory.getFinishedSpans().some((span) => span.spanContext().spanId === runSpanId));
    const finishedRun = memory.getFinishedSpans().find((span) => span.spanContext().spanId === runSpanId);
    expect(finishedRun?.name).toMatch(/^invoke_agent/);
    expect(finishedRun?.parentSpanContext?.spanId).toBe(sendInput.spanContext().spanId);
    const executed = capture.lines.find((line) => line.message === "run executed" && line["run_id"] === run?.runId);
    expect(executed).toMatchObject({ request_id: "req-run-1", trace_id: TRACE_ID, span_id: runSpanId });
  });

  it("carry a model turn's span ids on the turn's lines, and the run's on the run's own", async () => {
    const fake = await startFakeOpenAI();
    const traced = await createRuntime({
      logger,
      runtimeId: "rt-openai",
      executionBackend: createOpenAIBackend({ apiKey: "sk-log-correlation", baseURL: fake.baseURL }),
    });
    const tracedServer = await startRuntimeServer({ runtime: traced, host: "127.0.0.1", port: 0, logger });
    const tracedSession = new Http2SessionManager(`http://${tracedServer.h2Address}`);
    try {
      fake.enqueue(reply({ text: "hi" }));
      const headers = { traceparent: `00-${TRACE_ID}-${CALLER_SPAN_ID}-01`, "x-request-id": "req-turn-1" };
      const clients = clientsFor(makeTransport("grpc", `http://${tracedServer.h2Address}`, tracedSession, headers));
      const { worker } = await clients.catalog.createWorker({ runtimeId: traced.runtimeId });
      const { run } = await clients.interaction.sendInput({ worker: worker?.ref, input: { text: "hello" } });
      const ofRun = (message: string) => capture.lines.find((line) => line.message === message && line["run_id"] === run?.runId);
      await eventually(() => ofRun("run executed") !== undefined);
      const spans = () => memory.getFinishedSpans();
      const invokeSpan = () => spans().find((span) => span.attributes["worker_runtime.run.id"] === run?.runId);
      await eventually(() => invokeSpan() !== undefined);
      const invoke = invokeSpan()?.spanContext().spanId;
      const chat = spans()
        .find((span) => span.name.startsWith("chat ") && span.parentSpanContext?.spanId === invoke)
        ?.spanContext().spanId;
      expect(chat).toMatch(/^[0-9a-f]{16}$/);
      expect(ofRun("model answered")).toMatchObject({ request_id: "req-turn-1", trace_id: TRACE_ID, span_id: chat });
      expect(ofRun("run executed")).toMatchObject({ request_id: "req-turn-1", trace_id: TRACE_ID, span_id: invoke });
    } finally {
      tracedSession.abort();
      await tracedServer.close(0);
      await fake.close();
    }
  });

  it("carry the call's request, trace and span ids on the line of an internal error its handler threw", async () => {
    const throwing = await createRuntime({ logger, runtimeId: "rt-throwing" });
    const routes = (router: ConnectRouter): void => {
      router.service(RuntimeManagement, {
        getRuntime() {
          throw new Error("the disk is on fire");
        },
      });
    };
    const broken = await startRuntimeServer({ runtime: throwing, routes, host: "127.0.0.1", port: 0, logger });
    const brokenSession = new Http2SessionManager(`http://${broken.h2Address}`);
    try {
      const headers = { traceparent: `00-${TRACE_ID}-${CALLER_SPAN_ID}-01`, "x-request-id": "req-internal-1" };
      const clients = clientsFor(makeTransport("grpc", `http://${broken.h2Address}`, brokenSession, headers));
      await expect(clients.management.getRuntime({})).rejects.toMatchObject({ rawMessage: "internal error" });
      const method = "worker_runtime.v1.RuntimeManagement/GetRuntime";
      const serverSpan = memory
        .getFinishedSpans()
        .find((span: ReadableSpan) => span.name === method && span.attributes["rpc.response.status_code"] === "INTERNAL");
      if (!serverSpan) throw new Error("no server span");
      const internal = capture.lines.filter((line) => line.message === "internal error");
      expect(internal).toEqual([
        expect.objectContaining({
          request_id: "req-internal-1",
          rpc_method: method,
          trace_id: TRACE_ID,
          span_id: serverSpan.spanContext().spanId,
          error_type: "Error",
        }),
      ]);
    } finally {
      brokenSession.abort();
      await broken.close(0);
    }
  });
});
