import { create } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { BusyPolicy } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { RunStatus, StopReason, type Run } from "../../gen/worker_runtime/v1/run_pb.js";
import { ApprovalDecision, SendInputRequestSchema } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import { CreateWorkerRequestSchema } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import type { Worker } from "../../gen/worker_runtime/v1/worker_pb.js";
import {
  createMemoryStore,
  createRuntime,
  RuntimeError,
  StoreWriteError,
  type Runtime,
  type RuntimeStore,
} from "../../src/runtime/index.js";
import { cursorAt } from "../support/cursors.js";
import { eventually } from "../support/harness.js";
import { holdOpen, replyWith, ScriptedBackend, type RunScript } from "../support/scripted-backend.js";

/** A memory store whose next writes can be made to fail, as a full disk would. */
function flakyStore(): { store: RuntimeStore; failNext(method: "appendEvents" | "appendTranscript" | "putRun"): void } {
  const inner = createMemoryStore();
  const failing = new Set<string>();
  const guard =
    <A extends unknown[], R>(name: string, call: (...args: A) => Promise<R>) =>
    async (...args: A): Promise<R> => {
      if (failing.delete(name)) throw new StoreWriteError("ENOSPC: no space left on device");
      return call(...args);
    };
  const store: RuntimeStore = Object.assign(Object.create(inner) as RuntimeStore, {
    appendEvents: guard("appendEvents", inner.appendEvents.bind(inner)),
    appendTranscript: guard("appendTranscript", inner.appendTranscript.bind(inner)),
    putRun: guard("putRun", inner.putRun.bind(inner)),
  });
  return { store, failNext: (method) => failing.add(method) };
}

async function setUp(backend: ScriptedBackend, store?: RuntimeStore, cancelGraceMs = 300): Promise<{ runtime: Runtime; worker: Worker }> {
  const runtime = await createRuntime({ executionBackend: backend, limits: { cancelGraceMs }, ...(store ? { store } : {}) });
  const { worker } = await runtime.createWorker(create(CreateWorkerRequestSchema, { runtimeId: runtime.runtimeId }));
  if (!worker) throw new Error("no worker");
  return { runtime, worker };
}

function send(runtime: Runtime, worker: Worker, text: string, busyPolicy = BusyPolicy.REJECT, requestId = ""): Promise<Run> {
  return runtime.sendInput(create(SendInputRequestSchema, { worker: worker.ref, input: { text }, busyPolicy, requestId }));
}

async function statusOf(runtime: Runtime, worker: Worker, runId: string): Promise<RunStatus> {
  return (await runtime.getRun({ worker: worker.ref, runId })).status;
}

/** A run that asks for approval of one call, then answers with the decision. */
const approvalRun =
  (onAsked?: () => void): RunScript =>
  async (_request, sink, signal) => {
    const asking = sink.requestApproval({ toolCallId: "t1", toolName: "write_file", argumentsJson: "{}" }, signal);
    onAsked?.();
    try {
      const decision = await asking;
      await sink.commit({
        case: "assistantMessage",
        value: { $typeName: "worker_runtime.v1.AssistantMessage", text: decision.approved ? "approved" : "rejected" },
      });
      return { kind: "completed", stopReason: StopReason.END_TURN };
    } catch {
      return { kind: "cancelled" };
    }
  };

describe("races and failures in the core", () => {
  it("a cancel in the same tick as an approval request ends the run at once", async () => {
    const backend = new ScriptedBackend();
    const { runtime, worker } = await setUp(backend, undefined, 10_000);
    let runId = "";
    let cancelled: Promise<Run> | undefined;
    backend.enqueue(approvalRun(() => (cancelled = runtime.cancelRun({ worker: worker.ref, runId }))));
    runId = (await send(runtime, worker, "go")).runId;
    await eventually(() => cancelled !== undefined);
    const outcome = await Promise.race([cancelled, new Promise((resolve) => setTimeout(() => resolve("timeout"), 2_000))]);
    expect(outcome).not.toBe("timeout");
    expect((outcome as Run).status).toBe(RunStatus.CANCELLED);
  });

  it("the ResolveApproval answer shows the run running again", async () => {
    const backend = new ScriptedBackend();
    const { runtime, worker } = await setUp(backend);
    backend.enqueue(approvalRun());
    const { runId } = await send(runtime, worker, "go");
    await eventually(async () => (await statusOf(runtime, worker, runId)) === RunStatus.AWAITING_APPROVAL);
    const run = await runtime.resolveApproval({
      $typeName: "worker_runtime.v1.ResolveApprovalRequest",
      worker: worker.ref,
      runId,
      toolCallId: "t1",
      decision: ApprovalDecision.APPROVE,
      reason: "",
      requestId: "",
    });
    expect(run.status).toBe(RunStatus.RUNNING);
    expect(run.pendingApproval).toBeUndefined();
    await eventually(async () => (await statusOf(runtime, worker, runId)) === RunStatus.COMPLETED);
  });

  it("recovers when a transcript write succeeds but the event write after it fails", async () => {
    const backend = new ScriptedBackend();
    const { store, failNext } = flakyStore();
    const { runtime, worker } = await setUp(backend, store);
    let failedOnce = false;
    backend.enqueue(async (request, sink) => {
      // The input is written while the run starts; a read reaching it waits until it is durable.
      await request.readTranscript(undefined, 10);
      failNext("appendEvents");
      try {
        await sink.commit({ case: "assistantMessage", value: { $typeName: "worker_runtime.v1.AssistantMessage", text: "lost event" } });
      } catch {
        failedOnce = true;
      }
      return replyWith("after the failure")(request, sink, new AbortController().signal);
    });
    const first = await send(runtime, worker, "one");
    await eventually(async () => (await statusOf(runtime, worker, first.runId)) === RunStatus.COMPLETED);
    expect(failedOnce).toBe(true);
    const second = await send(runtime, worker, "two");
    await eventually(async () => (await statusOf(runtime, worker, second.runId)) === RunStatus.COMPLETED);
    const transcript = await runtime.readTranscript({
      $typeName: "worker_runtime.v1.ReadTranscriptRequest",
      worker: worker.ref,
      position: { case: undefined },
      limit: 50,
    });
    expect(transcript.entries.map((e) => e.seq)).toEqual(transcript.entries.map((_, i) => BigInt(i + 1)));
    expect(transcript.entries.map((e) => (e.content.value as { text: string }).text)).toContain("two");
  });

  it("an input whose acceptance could not be persisted does not run, and its request_id is free", async () => {
    const backend = new ScriptedBackend();
    const { store, failNext } = flakyStore();
    const { runtime, worker } = await setUp(backend, store);
    failNext("putRun");
    const error = await send(runtime, worker, "hello", BusyPolicy.REJECT, "req-1").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RuntimeError);
    expect((error as RuntimeError).reason).toBe(ErrorReason.STORE_UNAVAILABLE);
    expect((error as RuntimeError).code).toBe(Code.Unavailable);
    const retry = await send(runtime, worker, "hello", BusyPolicy.REJECT, "req-1");
    await eventually(async () => (await statusOf(runtime, worker, retry.runId)) === RunStatus.COMPLETED);
  });

  it("StopWorker racing DeleteWorker leaves the worker deleted, removal last", async () => {
    const backend = new ScriptedBackend();
    const { runtime, worker } = await setUp(backend, undefined, 300);
    backend.enqueue(async () => new Promise(() => {}));
    await send(runtime, worker, "stuck");
    const cursorBefore =
      (
        await runtime
          .watchRuntime(
            { $typeName: "worker_runtime.v1.WatchRuntimeRequest", runtimeId: runtime.runtimeId, afterCursor: "" },
            { signal: AbortSignal.timeout(100) },
          )
          .next()
      ).value?.snapshot?.cursor ?? "";
    const stopping = runtime.stopWorker({ worker: worker.ref });
    await runtime.deleteWorker({ worker: worker.ref, force: false });
    await stopping.catch(() => {});
    expect(() => runtime.getWorker({ worker: worker.ref })).toThrow(RuntimeError);
    const kinds: string[] = [];
    const abort = new AbortController();
    setTimeout(() => abort.abort(), 300);
    for await (const message of runtime.watchRuntime(
      { $typeName: "worker_runtime.v1.WatchRuntimeRequest", runtimeId: runtime.runtimeId, afterCursor: cursorBefore },
      { signal: abort.signal },
    )) {
      kinds.push(...message.events.map((e) => e.kind.case ?? ""));
    }
    expect(kinds[kinds.length - 1]).toBe("workerRemoved");
  });

  it("INTERRUPT ends a run that ignores its signal after the grace period", async () => {
    const backend = new ScriptedBackend();
    const { runtime, worker } = await setUp(backend, undefined, 200);
    backend.enqueue(async () => new Promise(() => {}), replyWith("next"));
    const first = await send(runtime, worker, "stuck");
    await eventually(() => backend.requests.length === 1);
    const second = await send(runtime, worker, "go on", BusyPolicy.INTERRUPT);
    await eventually(async () => (await statusOf(runtime, worker, second.runId)) === RunStatus.COMPLETED, 3_000);
    expect(await statusOf(runtime, worker, first.runId)).toBe(RunStatus.CANCELLED);
  });

  it("two INTERRUPTs in a row run in the order they were sent", async () => {
    const backend = new ScriptedBackend();
    const { runtime, worker } = await setUp(backend);
    const held = holdOpen("a");
    backend.enqueue(held.script, replyWith("b"), replyWith("c"));
    await send(runtime, worker, "A");
    await held.started;
    const b = await send(runtime, worker, "B", BusyPolicy.INTERRUPT);
    const c = await send(runtime, worker, "C", BusyPolicy.INTERRUPT);
    await eventually(async () => (await statusOf(runtime, worker, c.runId)) === RunStatus.COMPLETED);
    expect(await statusOf(runtime, worker, b.runId)).toBe(RunStatus.COMPLETED);
    const transcript = await runtime.readTranscript({
      $typeName: "worker_runtime.v1.ReadTranscriptRequest",
      worker: worker.ref,
      position: { case: undefined },
      limit: 50,
    });
    const users = transcript.entries.filter((e) => e.content.case === "userMessage").map((e) => (e.content.value as { text: string }).text);
    expect(users).toEqual(["A", "B", "C"]);
  });

  it("a resume whose history is pruned during replay fails with CURSOR_EXPIRED instead of skipping", async () => {
    const backend = new ScriptedBackend();
    const runtime = await createRuntime({ executionBackend: backend, limits: { eventRetention: 10 } });
    const { worker } = await runtime.createWorker(create(CreateWorkerRequestSchema, { runtimeId: runtime.runtimeId }));
    if (!worker) throw new Error("no worker");
    let last = "";
    for (let i = 0; i < 3; i++) last = (await send(runtime, worker, `m${i}`, BusyPolicy.ENQUEUE)).runId;
    await eventually(async () => (await statusOf(runtime, worker, last)) === RunStatus.COMPLETED);
    const lastSeq = runtime.getWorker({ worker: worker.ref }).lastEventSeq;
    const peek = new AbortController();
    const current =
      (
        await runtime
          .watchWorker({ $typeName: "worker_runtime.v1.WatchWorkerRequest", worker: worker.ref, afterCursor: "" }, { signal: peek.signal })
          .next()
      ).value?.snapshot?.cursor ?? "";
    peek.abort();
    const stream = runtime.watchWorker(
      { $typeName: "worker_runtime.v1.WatchWorkerRequest", worker: worker.ref, afterCursor: cursorAt(current, lastSeq - 8n) },
      { signal: new AbortController().signal },
    );
    expect((await stream.next()).value?.snapshot).toBeDefined();
    for (let i = 0; i < 3; i++) last = (await send(runtime, worker, `more${i}`, BusyPolicy.ENQUEUE)).runId;
    await eventually(async () => (await statusOf(runtime, worker, last)) === RunStatus.COMPLETED);
    const error = await stream.next().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RuntimeError);
    expect((error as RuntimeError).reason).toBe(ErrorReason.CURSOR_EXPIRED);
  });
});
