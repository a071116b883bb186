import { Http2SessionManager } from "@connectrpc/connect-node";
import { ROOT_CONTEXT, SpanKind, trace } from "@opentelemetry/api";
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { WorkerRef } from "../../../gen/worker_runtime/v1/common_pb.js";
import { RunStatus } from "../../../gen/worker_runtime/v1/run_pb.js";
import { ApprovalDecision } from "../../../gen/worker_runtime/v1/worker_interaction_pb.js";
import { createRuntime, type RuntimeStore, silentLogger } from "../../../src/runtime/index.js";
import { type RuntimeServer, startRuntimeServer } from "../../../src/server/index.js";
import { createFileStore } from "../../../src/store/fs/index.js";
import { type InstalledTracing, installTracing } from "../../../src/telemetry/tracing/tracing-sdk.js";
import { type Clients, clientsFor, eventually, makeTransport } from "../../support/harness.js";
import { awaitApproval, ScriptedBackend } from "../../support/scripted-backend.js";

/**
 * Which call a run's span belongs to when another call than the one that
 * sent its input lets it go on: a live approval leaves the run in its span,
 * the SendInput's child; a parked run (waiting for approval across a
 * restart) resumes in a new `invoke_agent` span, the child of the
 * ResolveApproval that resumed it, and its backend gets that span. Real
 * servers on 127.0.0.1 over HTTP/2, a file store, spans in memory.
 */

const SEND_INPUT = "worker_runtime.v1.WorkerInteraction/SendInput";
const RESOLVE_APPROVAL = "worker_runtime.v1.WorkerInteraction/ResolveApproval";
const RUNTIME_ID = "rt-approval";
const CALLER_SPAN_ID = "00f067aa0ba902b7";
const SEND_TRACE = "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e51";
const RESOLVE_TRACE = "a9a9a9a9a9a9a9a9a9a9a9a9a9a9a9a2";

/** A run that commits a tool call, waits for its approval (asked again when resumed) and answers. */
const approvalScript = awaitApproval();

let memory: InMemorySpanExporter;
let tracing: InstalledTracing;
let dir: string | undefined;
let server: RuntimeServer | undefined;
let session: Http2SessionManager | undefined;

beforeAll(() => {
  memory = new InMemorySpanExporter();
  tracing = installTracing({ serviceName: "approval-run-span-test", spanProcessors: [new SimpleSpanProcessor(memory)] });
});

afterAll(() => tracing?.shutdown());
beforeEach(() => memory.reset());

afterEach(async () => {
  await stop();
  if (dir) await rm(dir, { recursive: true, force: true });
  dir = undefined;
});

/** A runtime server with its own scripted backend; `store` kept across restarts. */
async function start(backend: ScriptedBackend, store?: RuntimeStore): Promise<RuntimeServer> {
  const runtime = await createRuntime({
    runtimeId: RUNTIME_ID,
    logger: silentLogger,
    executionBackend: backend,
    ...(store ? { store } : {}),
  });
  server = await startRuntimeServer({ runtime, host: "127.0.0.1", port: 0, logger: silentLogger });
  session = new Http2SessionManager(`http://${server.h2Address}`);
  return server;
}

async function stop(): Promise<void> {
  session?.abort();
  session = undefined;
  await server?.close(0);
  server = undefined;
}

/** gRPC clients to the current server, each call continuing the trace `traceId`. */
function clientsIn(traceId: string): Clients {
  if (!server || !session) throw new Error("no server");
  return clientsFor(makeTransport("grpc", `http://${server.h2Address}`, session, { traceparent: `00-${traceId}-${CALLER_SPAN_ID}-01` }));
}

async function waitFor(clients: Clients, worker: WorkerRef | undefined, runId: string, status: RunStatus): Promise<void> {
  await eventually(
    async () => (await clients.interaction.getRun({ worker, runId })).run?.status === status,
    5_000,
    `run ${runId} ${RunStatus[status]}`,
  );
}

const finished = (): ReadableSpan[] => memory.getFinishedSpans();
const runSpans = (runId: string, traceId: string): ReadableSpan[] =>
  finished().filter((s) => s.attributes["worker_runtime.run.id"] === runId && s.spanContext().traceId === traceId);
const serverSpan = (name: string, traceId: string): ReadableSpan | undefined =>
  finished().find((s) => s.name === name && s.kind === SpanKind.SERVER && s.spanContext().traceId === traceId);

describe("a run waiting for approval", () => {
  it("stays in the span of the SendInput that started it when a ResolveApproval decides it live", async () => {
    const backend = new ScriptedBackend(approvalScript);
    await start(backend);
    const sender = clientsIn(SEND_TRACE);
    const { worker } = await sender.catalog.createWorker({ runtimeId: RUNTIME_ID });
    const { run } = await sender.interaction.sendInput({ worker: worker?.ref, input: { text: "write" } });
    const runId = run?.runId ?? "";
    await waitFor(sender, worker?.ref, runId, RunStatus.AWAITING_APPROVAL);
    const decide = { worker: worker?.ref, runId, toolCallId: "c1", decision: ApprovalDecision.APPROVE };
    await clientsIn(RESOLVE_TRACE).interaction.resolveApproval(decide);
    await waitFor(sender, worker?.ref, runId, RunStatus.COMPLETED);

    await eventually(() => runSpans(runId, SEND_TRACE).length === 1, 5_000, "the run's span");
    const [runSpan] = runSpans(runId, SEND_TRACE);
    expect(runSpan?.parentSpanContext?.spanId).toBe(serverSpan(SEND_INPUT, SEND_TRACE)?.spanContext().spanId);
    expect(runSpan?.attributes["worker_runtime.run.outcome"]).toBe("completed");
    // The ResolveApproval has its own server span and started no run span.
    expect(serverSpan(RESOLVE_APPROVAL, RESOLVE_TRACE)).toBeDefined();
    expect(runSpans(runId, RESOLVE_TRACE)).toEqual([]);
  });

  it("resumes after a restart in a span that is the child of the ResolveApproval that resumed it, which its backend gets", async () => {
    dir = await mkdtemp(path.join(tmpdir(), "wr-approval-run-span-"));
    await start(new ScriptedBackend(approvalScript), createFileStore({ dataDir: dir }));
    const sender = clientsIn(SEND_TRACE);
    const { worker } = await sender.catalog.createWorker({ runtimeId: RUNTIME_ID });
    const { run } = await sender.interaction.sendInput({ worker: worker?.ref, input: { text: "write" } });
    const runId = run?.runId ?? "";
    await waitFor(sender, worker?.ref, runId, RunStatus.AWAITING_APPROVAL);
    await stop();

    const resumedBackend = new ScriptedBackend(approvalScript);
    await start(resumedBackend, createFileStore({ dataDir: dir }));
    const resolver = clientsIn(RESOLVE_TRACE);
    await resolver.interaction.resolveApproval({ worker: worker?.ref, runId, toolCallId: "c1", decision: ApprovalDecision.APPROVE });
    await waitFor(resolver, worker?.ref, runId, RunStatus.COMPLETED);

    await eventually(() => runSpans(runId, RESOLVE_TRACE).length === 1, 5_000, "the resumed run's span");
    const [resumedSpan] = runSpans(runId, RESOLVE_TRACE);
    const resolve = serverSpan(RESOLVE_APPROVAL, RESOLVE_TRACE);
    expect(resolve?.parentSpanContext?.spanId).toBe(CALLER_SPAN_ID);
    expect(resumedSpan?.parentSpanContext?.spanId).toBe(resolve?.spanContext().spanId);
    expect(resumedSpan?.attributes["worker_runtime.run.outcome"]).toBe("completed");
    // The resumed backend parents its own spans on the resumed run's span.
    expect(resumedBackend.requests.map((request) => request.resume?.toolCallId)).toEqual(["c1"]);
    const given = trace.getSpan(resumedBackend.requests[0]?.traceContext ?? ROOT_CONTEXT)?.spanContext();
    expect(given?.spanId).toBe(resumedSpan?.spanContext().spanId);
  });
});
