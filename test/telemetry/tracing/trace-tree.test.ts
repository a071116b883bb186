import { mkdir, mkdtemp, realpath, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient, type Transport } from "@connectrpc/connect";
import { Http2SessionManager } from "@connectrpc/connect-node";
import { SpanKind, SpanStatusCode } from "@opentelemetry/api";
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RuntimeHealth } from "../../../gen/worker_runtime/v1/backend_pb.js";
import { BusyPolicy } from "../../../gen/worker_runtime/v1/common_pb.js";
import { RunStatus } from "../../../gen/worker_runtime/v1/run_pb.js";
import { RuntimeRegistry } from "../../../gen/worker_runtime/v1/runtime_registry_pb.js";
import type { Worker } from "../../../gen/worker_runtime/v1/worker_pb.js";
import { createBackend, type Backend } from "../../../src/backend/index.js";
import { createOpenAIBackend } from "../../../src/engine/index.js";
import { createRuntime, type Runtime, silentLogger } from "../../../src/runtime/index.js";
import { type RuntimeServer, startRuntimeServer } from "../../../src/server/index.js";
import { type InstalledTracing, installTracing } from "../../../src/telemetry/tracing/tracing-sdk.js";
import { type FakeOpenAI, startFakeOpenAI } from "../../support/fake-openai.js";
import { clientsFor, type Clients, eventually, type Harness, makeTransport, startHarness } from "../../support/harness.js";
import { replyChunks } from "../../support/openai-chunks.js";
import { bundleOf } from "../../support/bundles.js";

/**
 * One trace from a client through the Backend and a remote runtime to the
 * model provider: the Backend and the runtime are real servers on
 * 127.0.0.1 over HTTP/2 in this process, every span goes to one in-memory
 * exporter, and the provider is the local fake, which records the request
 * headers. The tree is checked by parent ids, not just by names.
 */

const TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN_ID = "00f067aa0ba902b7";
const TRACEPARENT = `00-${TRACE_ID}-${CALLER_SPAN_ID}-01`;
const TRACESTATE = "vendor=opaque-value";
const BAGGAGE = "user.id=u-private-42";
const FILE_TEXT = "the secret plan is in the drawer";
const INPUT_TEXT = "what do my notes say?";
const ANSWER_TEXT = "Your notes mention a drawer.";
const TOOL_ARGUMENTS = JSON.stringify({ path: "notes.txt" });

const SEND_INPUT = "worker_runtime.v1.WorkerInteraction/SendInput";
const STREAM_INPUT = "worker_runtime.v1.WorkerInteraction/StreamInput";
const WATCH_WORKER = "worker_runtime.v1.WorkerObservation/WatchWorker";
const GET_RUNTIME = "worker_runtime.v1.RuntimeManagement/GetRuntime";

let memory: InMemorySpanExporter;
let tracing: InstalledTracing;
let fake: FakeOpenAI;
let base: string;
let remote: Harness;
let embedded: Runtime;
let backend: Backend;
let backendServer: RuntimeServer;
const sessions: Http2SessionManager[] = [];

/** A gRPC transport to the Backend, optionally sending fixed headers on every call. */
function backendTransport(headers?: Record<string, string>): Transport {
  const baseUrl = `http://${backendServer.h2Address}`;
  const sessionManager = new Http2SessionManager(baseUrl);
  sessions.push(sessionManager);
  return makeTransport("grpc", baseUrl, sessionManager, headers);
}

/** Clients to the Backend over gRPC, optionally sending fixed headers on every call. */
function backendClients(headers?: Record<string, string>): Clients {
  return clientsFor(backendTransport(headers));
}

beforeAll(async () => {
  memory = new InMemorySpanExporter();
  tracing = installTracing({ serviceName: "trace-tree-test", spanProcessors: [new SimpleSpanProcessor(memory)] });
  fake = await startFakeOpenAI();
  base = await realpath(await mkdtemp(join(tmpdir(), "trace-tree-")));
  await mkdir(join(base, "project"));
  await writeFile(join(base, "project", "notes.txt"), FILE_TEXT);
  remote = await startHarness({
    runtimeId: "rt-remote",
    executionBackend: createOpenAIBackend({ apiKey: "sk-trace-test", baseURL: fake.baseURL, retry: { baseDelayMs: 5, budgetMs: 1_000 } }),
    workspaceRoots: { work: base },
  });
  embedded = await createRuntime({ logger: silentLogger, runtimeId: "rt-embedded" });
  backend = createBackend({
    runtime: embedded,
    logger: silentLogger,
    remotes: [{ runtimeId: "rt-remote", url: remote.baseUrl }],
    workerWatchLingerMs: 100,
  });
  backendServer = await startRuntimeServer({ runtime: embedded, routes: backend.routes, host: "127.0.0.1", port: 0, logger: silentLogger });
  await eventually(() => backend.directory.get("rt-remote")?.health === RuntimeHealth.READY, 10_000, "the remote runtime READY");
});

afterAll(async () => {
  for (const session of sessions) session.abort();
  backend?.close();
  await backendServer?.close(0);
  await remote?.close();
  await fake?.close();
  await tracing?.shutdown();
  if (base) await rm(base, { recursive: true, force: true });
});

async function newWorker(): Promise<Worker> {
  const { worker } = await backendClients().catalog.createWorker({
    runtimeId: "rt-remote",
    capabilities: ["fs.read"],
    workspace: { root: "work", path: "project" },
  });
  if (!worker) throw new Error("no worker");
  return worker;
}

/** Scripts the provider: one read_file call, then the final answer. */
function scriptToolThenAnswer(callId: string): void {
  fake.enqueue(
    {
      kind: "stream",
      chunks: replyChunks({
        toolCalls: [{ id: callId, name: "read_file", arguments: TOOL_ARGUMENTS }],
        usage: { prompt: 30, completion: 7 },
      }),
    },
    { kind: "stream", chunks: replyChunks({ text: ANSWER_TEXT, usage: { prompt: 50, completion: 9 } }) },
  );
}

async function waitForRun(worker: Worker, runId: string): Promise<void> {
  const clients = backendClients();
  await eventually(
    async () => (await clients.interaction.getRun({ worker: worker.ref, runId })).run?.status === RunStatus.COMPLETED,
    10_000,
    "the run to complete",
  );
}

const finished = (): ReadableSpan[] => memory.getFinishedSpans();
const parentOf = (span: ReadableSpan): string | undefined => span.parentSpanContext?.spanId;

/** The one finished span matching, failing with what there was otherwise. */
function single(what: string, match: (span: ReadableSpan) => boolean): ReadableSpan {
  const found = finished().filter(match);
  if (found.length !== 1) {
    const names = finished().map((span) => `${span.name}(${SpanKind[span.kind]})`);
    throw new Error(`expected one ${what}, found ${found.length} among ${names.join(", ")}`);
  }
  return found[0] as ReadableSpan;
}

const childrenOf = (parent: ReadableSpan): ReadableSpan[] => finished().filter((span) => parentOf(span) === parent.spanContext().spanId);

describe("a traceparent sent to the Backend", () => {
  it("reaches the provider and ties Backend, runtime, run, model call and tool call into one tree", async () => {
    const worker = await newWorker();
    scriptToolThenAnswer("call_read_1");
    const requestsBefore = fake.requests.length;
    const { run } = await backendClients({ traceparent: TRACEPARENT, tracestate: TRACESTATE, baggage: BAGGAGE }).interaction.sendInput({
      worker: worker.ref,
      input: { text: INPUT_TEXT },
    });
    if (!run) throw new Error("no run");
    await waitForRun(worker, run.runId);
    const runId = run.runId;

    const invokeAgent = (span: ReadableSpan): boolean =>
      span.attributes["gen_ai.operation.name"] === "invoke_agent" && span.attributes["worker_runtime.run.id"] === runId;
    await eventually(() => finished().some(invokeAgent), 5_000, "the run's span");

    // The Backend's server span continues the caller's trace.
    const backendServerSpan = single("Backend SendInput server span", (s) => s.name === SEND_INPUT && parentOf(s) === CALLER_SPAN_ID);
    expect(backendServerSpan.kind).toBe(SpanKind.SERVER);
    expect(backendServerSpan.spanContext().traceId).toBe(TRACE_ID);
    expect(backendServerSpan.attributes).toMatchObject({
      "rpc.system.name": "grpc",
      "rpc.method": SEND_INPUT,
      "rpc.response.status_code": "OK",
    });

    // Its client span to the remote runtime.
    const [backendClientSpan, ...otherClients] = childrenOf(backendServerSpan).filter((s) => s.kind === SpanKind.CLIENT);
    expect(otherClients).toEqual([]);
    if (!backendClientSpan) throw new Error("no Backend client span");
    expect(backendClientSpan.name).toBe(SEND_INPUT);
    expect(backendClientSpan.attributes).toMatchObject({
      "rpc.system.name": "grpc",
      "rpc.method": SEND_INPUT,
      "rpc.response.status_code": "OK",
      "server.address": "127.0.0.1",
    });

    // The runtime's server span, child of the Backend's client span.
    const runtimeServerSpan = single(
      "runtime SendInput server span",
      (s) => s.name === SEND_INPUT && parentOf(s) === backendClientSpan.spanContext().spanId,
    );
    expect(runtimeServerSpan.kind).toBe(SpanKind.SERVER);

    // The run executes after SendInput answered, yet is its child.
    const runSpan = single("invoke_agent span", invokeAgent);
    expect(parentOf(runSpan)).toBe(runtimeServerSpan.spanContext().spanId);
    expect(runSpan.name).toBe("invoke_agent companion");
    expect(runSpan.kind).toBe(SpanKind.INTERNAL);
    expect(runSpan.attributes).toMatchObject({
      "gen_ai.agent.id": worker.ref?.workerId,
      "gen_ai.agent.name": "companion",
      "worker_runtime.run.outcome": "completed",
      "gen_ai.usage.input_tokens": 80,
      "gen_ai.usage.output_tokens": 16,
    });

    // Two model turns and one tool call under the run, in that order.
    const underRun = childrenOf(runSpan).sort((a, b) => a.startTime[0] - b.startTime[0] || a.startTime[1] - b.startTime[1]);
    const model = fake.requests[requestsBefore]?.body.model;
    expect(underRun.map((s) => s.name)).toEqual([`chat ${model}`, "execute_tool read_file", `chat ${model}`]);
    const [firstChat, toolSpan, secondChat] = underRun as [ReadableSpan, ReadableSpan, ReadableSpan];
    expect(firstChat.kind).toBe(SpanKind.CLIENT);
    expect(firstChat.attributes).toMatchObject({
      "gen_ai.operation.name": "chat",
      "gen_ai.provider.name": "openai",
      "gen_ai.request.model": model,
      "gen_ai.response.model": "fake-model",
      "gen_ai.usage.input_tokens": 30,
      "gen_ai.usage.output_tokens": 7,
      "gen_ai.response.finish_reasons": ["tool_calls"],
    });
    expect(secondChat.attributes["gen_ai.response.finish_reasons"]).toEqual(["stop"]);
    expect(toolSpan.attributes).toMatchObject({
      "gen_ai.operation.name": "execute_tool",
      "gen_ai.tool.name": "read_file",
      "gen_ai.tool.call.id": "call_read_1",
    });
    expect(toolSpan.status.code).not.toBe(SpanStatusCode.ERROR);

    // Every span of the tree is in the caller's trace.
    for (const span of [backendClientSpan, runtimeServerSpan, runSpan, ...underRun]) expect(span.spanContext().traceId).toBe(TRACE_ID);

    // The provider saw the same trace, each request as a child of its chat span.
    const providerRequests = fake.requests.slice(requestsBefore);
    expect(providerRequests).toHaveLength(2);
    expect(providerRequests.map((request) => request.headers.traceparent)).toEqual([
      `00-${TRACE_ID}-${firstChat.spanContext().spanId}-01`,
      `00-${TRACE_ID}-${secondChat.spanContext().spanId}-01`,
    ]);
    expect(providerRequests.map((request) => request.headers.tracestate)).toEqual([TRACESTATE, TRACESTATE]);
    // The caller's baggage stays inside: the provider is a third party.
    expect(providerRequests.map((request) => request.headers.baggage)).toEqual([undefined, undefined]);

    // No message, tool argument or tool output went into any span.
    const recorded = JSON.stringify(finished().map((span) => [span.name, span.attributes, span.events]));
    for (const text of [INPUT_TEXT, ANSWER_TEXT, FILE_TEXT, TOOL_ARGUMENTS, "notes.txt", "sk-trace-test"])
      expect(recorded).not.toContain(text);
  });

  it("makes a queued run the child of the SendInput that queued it, not of the run before it", async () => {
    const worker = await newWorker();
    fake.enqueue(
      { kind: "stream", chunks: replyChunks({ text: "first answer" }), delayMs: 60 },
      { kind: "stream", chunks: replyChunks({ text: "second answer" }) },
    );
    const traceA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa1";
    const traceB = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb2";
    const send = (traceId: string) =>
      backendClients({ traceparent: `00-${traceId}-${CALLER_SPAN_ID}-01` }).interaction.sendInput({
        worker: worker.ref,
        input: { text: INPUT_TEXT },
        busyPolicy: BusyPolicy.ENQUEUE,
      });
    const first = (await send(traceA)).run;
    const second = (await send(traceB)).run;
    if (!first || !second) throw new Error("no run");
    expect(second.status).toBe(RunStatus.QUEUED);
    await waitForRun(worker, second.runId);
    const runSpanOf = (runId: string) => (s: ReadableSpan) => s.attributes["worker_runtime.run.id"] === runId;
    await eventually(() => finished().some(runSpanOf(second.runId)), 5_000, "the queued run's span");
    const firstRun = single("first run span", runSpanOf(first.runId));
    const secondRun = single("queued run span", runSpanOf(second.runId));
    expect(firstRun.spanContext().traceId).toBe(traceA);
    expect(secondRun.spanContext().traceId).toBe(traceB);
    const parent = single("queued run's parent", (s) => s.spanContext().spanId === parentOf(secondRun));
    expect(parent.name).toBe(SEND_INPUT);
    expect(parent.kind).toBe(SpanKind.SERVER);
    expect(parent.spanContext().traceId).toBe(traceB);
  });

  it("reaches the embedded runtime through the in-process transport, with a client and a server span", async () => {
    const traceId = "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeee3";
    const clients = backendClients({ traceparent: `00-${traceId}-${CALLER_SPAN_ID}-01` });
    await clients.catalog.createWorker({ runtimeId: "rt-embedded" });
    const createWorker = "worker_runtime.v1.WorkerCatalog/CreateWorker";
    const inTrace = (s: ReadableSpan): boolean => s.spanContext().traceId === traceId && s.name === createWorker;
    const backendSpan = single("Backend CreateWorker server span", (s) => inTrace(s) && parentOf(s) === CALLER_SPAN_ID);
    const clientSpan = single("Backend → embedded client span", (s) => inTrace(s) && parentOf(s) === backendSpan.spanContext().spanId);
    expect(clientSpan.kind).toBe(SpanKind.CLIENT);
    expect(clientSpan.attributes["rpc.system.name"]).toBe("connectrpc");
    const embeddedSpan = single("embedded CreateWorker server span", (s) => inTrace(s) && parentOf(s) === clientSpan.spanContext().spanId);
    expect(embeddedSpan.kind).toBe(SpanKind.SERVER);
    expect(embeddedSpan.attributes["rpc.response.status_code"]).toBe("ok");
  });

  it("keeps the Backend's bundle lookup in the embedded runtime in the trace of the CreateWorker it serves", async () => {
    const bundle = bundleOf({ bundleId: "traced-team", profiles: [{ name: "helper", model: "gpt-test" }] });
    await backendClients().management.putConfigBundle({ bundle });
    const traceId = "fbfbfbfbfbfbfbfbfbfbfbfbfbfbfbf5";
    const profile = { source: { case: "bundle" as const, value: { bundleId: "traced-team", digest: bundle.digest, profile: "helper" } } };
    await backendClients({ traceparent: `00-${traceId}-${CALLER_SPAN_ID}-01` }).catalog.createWorker({ runtimeId: "rt-remote", profile });
    const createWorker = "worker_runtime.v1.WorkerCatalog/CreateWorker";
    const backendSpan = single(
      "Backend CreateWorker server span",
      (s) => s.name === createWorker && s.spanContext().traceId === traceId && parentOf(s) === CALLER_SPAN_ID,
    );
    // Found in the embedded runtime, then looked for on, pushed to and created on the remote one: all calls of this CreateWorker.
    const calls = childrenOf(backendSpan)
      .filter((s) => s.kind === SpanKind.CLIENT)
      .sort((a, b) => a.startTime[0] - b.startTime[0] || a.startTime[1] - b.startTime[1])
      .map((s) => `${s.attributes["rpc.system.name"]} ${s.name}`);
    expect(calls).toEqual([
      "connectrpc worker_runtime.v1.RuntimeManagement/GetConfigBundle",
      "grpc worker_runtime.v1.RuntimeManagement/GetConfigBundle",
      "grpc worker_runtime.v1.RuntimeManagement/PutConfigBundle",
      `grpc ${createWorker}`,
    ]);
  });

  it("keeps the summaries ListRuntimes and GetRegisteredRuntime fetch in the trace of the call they serve", async () => {
    const traceId = "cacacacacacacacacacacacacacacac6";
    const registry = createClient(RuntimeRegistry, backendTransport({ traceparent: `00-${traceId}-${CALLER_SPAN_ID}-01` }));
    const { runtimes } = await registry.listRuntimes({});
    expect(runtimes.map((r) => r.runtimeId).sort()).toEqual(["rt-embedded", "rt-remote"]);
    await registry.getRegisteredRuntime({ runtimeId: "rt-remote" });
    const served = (method: string): ReadableSpan =>
      single(method, (s) => s.name === `worker_runtime.v1.RuntimeRegistry/${method}` && s.spanContext().traceId === traceId);
    const summaries = (parent: ReadableSpan): string[] =>
      childrenOf(parent)
        .filter((s) => s.kind === SpanKind.CLIENT && s.name === GET_RUNTIME)
        .map((s) => String(s.attributes["rpc.system.name"]))
        .sort();
    // One GetRuntime per READY runtime: the embedded one in process, the remote one over gRPC.
    expect(summaries(served("ListRuntimes"))).toEqual(["connectrpc", "grpc"]);
    expect(summaries(served("GetRegisteredRuntime"))).toEqual(["grpc"]);
  });

  it("keeps a runtime's connection loop out of the trace of the AddRuntime that registered it", async () => {
    const traceId = "ddddddddddddddddddddddddddddddd4";
    const registry = createClient(RuntimeRegistry, backendTransport({ traceparent: `00-${traceId}-${CALLER_SPAN_ID}-01` }));
    const before = finished().length;
    // The runtime behind the URL reports another id, so the Backend keeps trying: a loop that outlives the call.
    await registry.addRuntime({ runtimeId: "rt-added", url: remote.baseUrl });
    const attempt = (s: ReadableSpan): boolean => s.kind === SpanKind.CLIENT && s.name === GET_RUNTIME;
    await eventually(() => finished().slice(before).some(attempt), 10_000, "a connection attempt's span");
    const inTrace = finished().filter((s) => s.spanContext().traceId === traceId);
    expect(inTrace.map((s) => s.name)).toEqual(["worker_runtime.v1.RuntimeRegistry/AddRuntime"]);
    const attemptSpan = finished().slice(before).find(attempt);
    expect(attemptSpan?.parentSpanContext).toBeUndefined();
    await registry.removeRuntime({ runtimeId: "rt-added" });
  });

  it("keeps a streaming call's context across its stream, and ends its spans when the stream ends", async () => {
    const worker = await newWorker();
    scriptToolThenAnswer("call_read_2");
    let lastMessageAt = 0;
    let runId = "";
    for await (const message of backendClients({ traceparent: TRACEPARENT }).interaction.streamInput({
      worker: worker.ref,
      input: { text: INPUT_TEXT },
    })) {
      if (message.run) runId = message.run.runId;
      lastMessageAt = Date.now();
    }
    const backendStream = single("Backend StreamInput server span", (s) => s.name === STREAM_INPUT && parentOf(s) === CALLER_SPAN_ID);
    expect(backendStream.attributes["rpc.response.status_code"]).toBe("OK");
    // Ended with the stream, not when the handler returned its iterable.
    const endMs = backendStream.endTime[0] * 1000 + backendStream.endTime[1] / 1e6;
    expect(endMs).toBeGreaterThanOrEqual(lastMessageAt - 50);
    const backendClient = single(
      "Backend StreamInput client span",
      (s) => s.name === STREAM_INPUT && parentOf(s) === backendStream.spanContext().spanId,
    );
    expect(backendClient.kind).toBe(SpanKind.CLIENT);
    const runtimeStream = single(
      "runtime StreamInput server span",
      (s) => s.name === STREAM_INPUT && parentOf(s) === backendClient.spanContext().spanId,
    );
    // The run StreamInput started from inside its stream is the stream span's child.
    await eventually(() => finished().some((s) => s.attributes["worker_runtime.run.id"] === runId), 5_000, "the run's span");
    const runSpan = single("StreamInput's run span", (s) => s.attributes["worker_runtime.run.id"] === runId);
    expect(parentOf(runSpan)).toBe(runtimeStream.spanContext().spanId);
    expect(childrenOf(runSpan).map((s) => s.attributes["gen_ai.operation.name"])).toEqual(
      expect.arrayContaining(["chat", "execute_tool", "chat"]),
    );
  });

  it("ends a watch's spans when the client cancels it", async () => {
    const worker = await newWorker();
    const seenBefore = new Set(finished());
    const abort = new AbortController();
    const watch = backendClients({ traceparent: TRACEPARENT }).observation.watchWorker({ worker: worker.ref }, { signal: abort.signal });
    for await (const _message of watch) break;
    abort.abort();
    const backendWatch = (s: ReadableSpan): boolean => s.name === WATCH_WORKER && parentOf(s) === CALLER_SPAN_ID;
    await eventually(() => finished().some(backendWatch), 5_000, "the Backend's WatchWorker span to end");
    const span = single("Backend WatchWorker server span", backendWatch);
    expect(span.attributes["rpc.response.status_code"]).toBe("CANCELLED");
    expect(span.status.code).not.toBe(SpanStatusCode.ERROR);
    // Served from the worker's shared upstream watch: the Backend's own call, which serves every client of the
    // worker, so in no client's trace (as its shared WatchRuntime), and ended a linger after its last client left.
    expect(finished().filter((s) => s.kind === SpanKind.CLIENT && parentOf(s) === span.spanContext().spanId)).toEqual([]);
    const upstream = (s: ReadableSpan): boolean =>
      s.kind === SpanKind.CLIENT && s.name === WATCH_WORKER && s.parentSpanContext === undefined && !seenBefore.has(s);
    await eventually(() => finished().some(upstream), 5_000, "the shared upstream WatchWorker span to end");
    expect(single("the shared upstream WatchWorker span", upstream).spanContext().traceId).not.toBe(span.spanContext().traceId);
  });
});
