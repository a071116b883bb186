import { create } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { BusyPolicy, type WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { RunStatus, StopReason, type Run } from "../../gen/worker_runtime/v1/run_pb.js";
import { ToolCallSchema, ToolResultSchema, type ToolResult } from "../../gen/worker_runtime/v1/transcript_pb.js";
import { WorkerStatus } from "../../gen/worker_runtime/v1/worker_pb.js";
import { CreateWorkerRequestSchema } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import {
  ApprovalDecision,
  ResolveApprovalRequestSchema,
  SendInputRequestSchema,
} from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import { createMemoryStore, createRuntime, type ApprovalResult, type RunRequest, type RuntimeStore } from "../../src/runtime/index.js";
import { createFileStore } from "../../src/store/fs/index.js";
import { expectReason } from "../support/errors.js";
import { eventually, startHarness, type Clients, type Harness } from "../support/harness.js";
import { replyWith, ScriptedBackend, type RunScript } from "../support/scripted-backend.js";

/**
 * The parked state of a run waiting for approval (issue 7), on the file
 * store with a scripted backend: a runtime closed while a run waits keeps
 * the run AWAITING_APPROVAL after the restart, and every operation that
 * meets the parked run (ResolveApproval, the busy policies, CancelRun,
 * StopWorker) handles it. The SIGKILL case with the real engine is in
 * test/cli/durable-approval.test.ts.
 */

let dir: string;
let harness: Harness | undefined;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "wr-approval-restart-"));
});
afterEach(async () => {
  await harness?.close();
  harness = undefined;
  await rm(dir, { recursive: true, force: true });
});

/** Serves the data dir; without a backend, workers are NOT_CONNECTED. */
async function serve(backend: ScriptedBackend | undefined): Promise<Clients> {
  await harness?.close();
  const store = createFileStore({ dataDir: dir });
  harness = await startHarness({ store, limits: { cancelGraceMs: 1_000 }, ...(backend ? { executionBackend: backend } : {}) });
  return harness.connect("grpc");
}

/** What the scripted backend saw of an approval request. */
interface Asked {
  request: RunRequest;
  decision: ApprovalResult;
}

/**
 * A run like the engine's: commits a tool call, asks for its approval and,
 * approved, commits its result and an answer. A resumed run (request.resume)
 * commits no call again; it asks about the call, which the sink decides at once.
 */
function approvalScript(asked: Asked[]): RunScript {
  return async (request, sink, signal) => {
    sink.turn();
    if (!request.resume) {
      await sink.commit({
        case: "toolCall",
        value: create(ToolCallSchema, { toolCallId: "c1", toolName: "write_file", argumentsJson: '{"path":"x"}' }),
      });
    }
    let decision: ApprovalResult;
    try {
      decision = await sink.requestApproval({ toolCallId: "c1", toolName: "write_file", argumentsJson: '{"path":"x"}' }, signal);
    } catch {
      // As the engine does, a cancelled wait records the call's result (a closed sink refuses it).
      const cancelled = create(ToolResultSchema, { toolCallId: "c1", toolName: "write_file", output: "cancelled", isError: true });
      await sink.commit({ case: "toolResult", value: cancelled }).catch(() => undefined);
      return { kind: "cancelled" };
    }
    asked.push({ request, decision });
    const output = decision.approved ? "written" : `rejected: ${decision.reason}`;
    await sink.commit({ case: "toolResult", value: create(ToolResultSchema, { toolCallId: "c1", toolName: "write_file", output }) });
    await sink.commit({ case: "assistantMessage", value: { $typeName: "worker_runtime.v1.AssistantMessage", text: "done" } });
    return { kind: "completed", stopReason: StopReason.END_TURN };
  };
}

/**
 * Creates a worker, sends input whose run waits for approval of c1, closes
 * the runtime and serves again with a backend whose next run is `resumed`.
 */
async function parkedRun(
  asked: Asked[] = [],
  resumed: RunScript = approvalScript(asked),
): Promise<{ clients: Clients; worker: WorkerRef; run: Run; backend: ScriptedBackend }> {
  const first = new ScriptedBackend().enqueue(approvalScript(asked));
  const clients = await serve(first);
  const runtimeId = harness?.runtime.runtimeId ?? "";
  const { worker } = await clients.catalog.createWorker({ runtimeId });
  const ref = worker?.ref;
  if (!ref) throw new Error("no worker");
  const { run } = await clients.interaction.sendInput({ worker: ref, input: { text: "write x" } });
  const runId = run?.runId ?? "";
  await waitForRun(clients, ref, runId, (r) => r.status === RunStatus.AWAITING_APPROVAL);
  const backend = new ScriptedBackend().enqueue(resumed);
  const reopened = await serve(backend);
  const restored = await getRun(reopened, ref, runId);
  return { clients: reopened, worker: ref, run: restored, backend };
}

async function getRun(clients: Clients, worker: WorkerRef, runId: string): Promise<Run> {
  const { run } = await clients.interaction.getRun({ worker, runId });
  if (!run) throw new Error("no run");
  return run;
}

async function waitForRun(clients: Clients, worker: WorkerRef, runId: string, check: (run: Run) => boolean): Promise<Run> {
  let last: Run | undefined;
  await eventually(
    async () => {
      last = await getRun(clients, worker, runId);
      return check(last);
    },
    5_000,
    `run ${runId}`,
  );
  return last as Run;
}

async function toolResults(clients: Clients, worker: WorkerRef): Promise<ToolResult[]> {
  const { entries } = await clients.observation.readTranscript({ worker });
  return entries.flatMap((e) => (e.content.case === "toolResult" ? [e.content.value] : []));
}

const CANCELLED_UNRUN = "The run was cancelled before this tool call ran, so it did not run.";

describe("a run waiting for approval across a restart", () => {
  it("is still AWAITING_APPROVAL with its call, shown as the worker's active run, and nothing was recorded for the call", async () => {
    const { clients, worker, run } = await parkedRun();
    expect(run.status).toBe(RunStatus.AWAITING_APPROVAL);
    expect(run.stopReason).toBe(StopReason.UNSPECIFIED);
    expect(run.pendingApproval).toMatchObject({ toolCallId: "c1", toolName: "write_file", argumentsJson: '{"path":"x"}' });
    expect(run.pendingApproval?.requestedAt).toBeDefined();
    const { worker: restored } = await clients.catalog.getWorker({ worker });
    expect(restored?.status).toBe(WorkerStatus.RUNNING);
    expect(restored?.activeRunId).toBe(run.runId);
    const controller = new AbortController();
    for await (const message of clients.observation.watchWorker({ worker }, { signal: controller.signal })) {
      expect(message.snapshot?.activeRun?.pendingApproval?.toolCallId).toBe("c1");
      expect(message.snapshot?.worker?.activeRunId).toBe(run.runId);
      controller.abort();
      break;
    }
    const listed = await clients.interaction.listRuns({ worker });
    expect(listed.runs.map((r) => r.status)).toEqual([RunStatus.AWAITING_APPROVAL]);
    // The shutdown ended the old execution without writing the call off as cancelled.
    expect(await toolResults(clients, worker)).toEqual([]);
  });

  it("does not hold a drain up: the waiting run is parked at once, not waited for", async () => {
    const clients = await serve(new ScriptedBackend().enqueue(approvalScript([])));
    const ref = (await clients.catalog.createWorker({ runtimeId: harness?.runtime.runtimeId ?? "" })).worker?.ref;
    if (!ref) throw new Error("no worker");
    const runId = (await clients.interaction.sendInput({ worker: ref, input: { text: "write x" } })).run?.runId ?? "";
    await waitForRun(clients, ref, runId, (r) => r.status === RunStatus.AWAITING_APPROVAL);
    const drained = harness?.runtime.drain(60_000).then(() => "drained");
    const outcome = await Promise.race([drained, new Promise((resolve) => setTimeout(() => resolve("still draining"), 5_000))]);
    expect(outcome).toBe("drained");
    expect((await getRun(clients, ref, runId)).status).toBe(RunStatus.AWAITING_APPROVAL);
  });

  it("survives a second restart untouched", async () => {
    const { worker, run } = await parkedRun();
    const again = await serve(new ScriptedBackend());
    const restored = await getRun(again, worker, run.runId);
    expect(restored.status).toBe(RunStatus.AWAITING_APPROVAL);
    expect(restored.pendingApproval).toEqual(run.pendingApproval);
  });

  it("resumes on APPROVE: the backend gets resume with the call, the sink answers it at once, the run completes", async () => {
    const asked: Asked[] = [];
    const { clients, worker, run, backend } = await parkedRun(asked);
    const answered = await clients.interaction.resolveApproval({
      worker,
      runId: run.runId,
      toolCallId: "c1",
      decision: ApprovalDecision.APPROVE,
    });
    expect(answered.run?.status).toBe(RunStatus.RUNNING);
    expect(answered.run?.pendingApproval).toBeUndefined();
    const done = await waitForRun(clients, worker, run.runId, (r) => r.status === RunStatus.COMPLETED);
    expect(done.turns).toBe(2);
    expect(backend.requests).toHaveLength(1);
    expect(backend.requests[0]?.resume).toEqual({ toolCallId: "c1" });
    expect(asked.map((a) => a.decision)).toEqual([{ approved: true, reason: "" }]);
    const { entries } = await clients.observation.readTranscript({ worker });
    // The input was not committed again.
    expect(entries.map((e) => e.content.case)).toEqual(["userMessage", "toolCall", "toolResult", "assistantMessage"]);
    const { worker: idle } = await clients.catalog.getWorker({ worker });
    expect(idle?.status).toBe(WorkerStatus.IDLE);
    expect(idle?.activeRunId).toBe("");
    expect(idle?.usage?.modelRequests).toBe(2n);
  });

  it("passes a rejection with its reason to the resumed run", async () => {
    const asked: Asked[] = [];
    const { clients, worker, run } = await parkedRun(asked);
    await clients.interaction.resolveApproval({
      worker,
      runId: run.runId,
      toolCallId: "c1",
      decision: ApprovalDecision.REJECT,
      reason: "no",
    });
    await waitForRun(clients, worker, run.runId, (r) => r.status === RunStatus.COMPLETED);
    expect(asked.map((a) => a.decision)).toEqual([{ approved: false, reason: "no" }]);
    expect((await toolResults(clients, worker)).map((r) => r.output)).toEqual(["rejected: no"]);
  });

  it("refuses a decision on another call, and a second decision, with APPROVAL_NOT_PENDING", async () => {
    const { clients, worker, run } = await parkedRun();
    const decide = (toolCallId: string) => () =>
      clients.interaction.resolveApproval({ worker, runId: run.runId, toolCallId, decision: ApprovalDecision.APPROVE });
    await expectReason(decide("c2"), Code.FailedPrecondition, ErrorReason.APPROVAL_NOT_PENDING);
    expect((await getRun(clients, worker, run.runId)).status).toBe(RunStatus.AWAITING_APPROVAL);
    await decide("c1")();
    await waitForRun(clients, worker, run.runId, (r) => r.status === RunStatus.COMPLETED);
    await expectReason(decide("c1"), Code.FailedPrecondition, ErrorReason.APPROVAL_NOT_PENDING);
  });

  it("keeps the worker busy: REJECT is WORKER_BUSY, ENQUEUE waits until the decided run has ended", async () => {
    const { clients, worker, run } = await parkedRun();
    await expectReason(
      () => clients.interaction.sendInput({ worker, input: { text: "now" } }),
      Code.FailedPrecondition,
      ErrorReason.WORKER_BUSY,
    );
    const queued = await clients.interaction.sendInput({ worker, input: { text: "later" }, busyPolicy: BusyPolicy.ENQUEUE });
    expect(queued.run?.status).toBe(RunStatus.QUEUED);
    expect((await getRun(clients, worker, run.runId)).status).toBe(RunStatus.AWAITING_APPROVAL);
    await clients.interaction.resolveApproval({ worker, runId: run.runId, toolCallId: "c1", decision: ApprovalDecision.APPROVE });
    await waitForRun(clients, worker, queued.run?.runId ?? "", (r) => r.status === RunStatus.COMPLETED);
    expect((await getRun(clients, worker, run.runId)).status).toBe(RunStatus.COMPLETED);
  });

  it("keeps it parked when the decision cannot run: WORKER_NOT_CONNECTED without a backend", async () => {
    const { worker, run } = await parkedRun();
    const unconnected = await serve(undefined);
    const decide = () =>
      unconnected.interaction.resolveApproval({ worker, runId: run.runId, toolCallId: "c1", decision: ApprovalDecision.APPROVE });
    await expectReason(decide, Code.FailedPrecondition, ErrorReason.WORKER_NOT_CONNECTED);
    const still = await getRun(unconnected, worker, run.runId);
    expect(still.status).toBe(RunStatus.AWAITING_APPROVAL);
    expect(still.pendingApproval?.toolCallId).toBe("c1");
    expect((await unconnected.interaction.cancelRun({ worker, runId: run.runId })).run?.status).toBe(RunStatus.CANCELLED);
  });

  it("keeps it parked while the runtime drains: RUNTIME_DRAINING", async () => {
    const { clients, worker, run } = await parkedRun();
    await harness?.runtime.drain(0);
    const decide = () =>
      clients.interaction.resolveApproval({ worker, runId: run.runId, toolCallId: "c1", decision: ApprovalDecision.APPROVE });
    await expectReason(decide, Code.Unavailable, ErrorReason.RUNTIME_DRAINING);
    expect((await getRun(clients, worker, run.runId)).status).toBe(RunStatus.AWAITING_APPROVAL);
  });

  it("CancelRun ends it CANCELLED with a result for the call, and the worker takes input again", async () => {
    // The backend's next run is the next input's, not a resumed one.
    const { clients, worker, run } = await parkedRun([], replyWith("ok"));
    const { run: cancelled } = await clients.interaction.cancelRun({ worker, runId: run.runId });
    expect(cancelled?.status).toBe(RunStatus.CANCELLED);
    expect(cancelled?.stopReason).toBe(StopReason.CANCELLED);
    expect(cancelled?.pendingApproval).toBeUndefined();
    expect(await toolResults(clients, worker)).toMatchObject([
      { toolCallId: "c1", toolName: "write_file", isError: true, output: CANCELLED_UNRUN },
    ]);
    const { worker: idle } = await clients.catalog.getWorker({ worker });
    expect(idle?.status).toBe(WorkerStatus.IDLE);
    expect(idle?.usage?.modelRequests).toBe(1n);
    const next = await clients.interaction.sendInput({ worker, input: { text: "next" } });
    await waitForRun(clients, worker, next.run?.runId ?? "", (r) => r.status === RunStatus.COMPLETED);
    // Idempotent: cancelling again returns the final state.
    expect((await clients.interaction.cancelRun({ worker, runId: run.runId })).run?.status).toBe(RunStatus.CANCELLED);
  });

  it("INTERRUPT cancels it and runs the new input", async () => {
    const { clients, worker, run } = await parkedRun([], replyWith("ok"));
    const next = await clients.interaction.sendInput({ worker, input: { text: "instead" }, busyPolicy: BusyPolicy.INTERRUPT });
    await waitForRun(clients, worker, next.run?.runId ?? "", (r) => r.status === RunStatus.COMPLETED);
    expect((await getRun(clients, worker, run.runId)).status).toBe(RunStatus.CANCELLED);
    expect((await toolResults(clients, worker)).map((r) => r.output)).toEqual([CANCELLED_UNRUN]);
  });

  it("StopWorker cancels it and the worker stays stopped after another restart", async () => {
    const { clients, worker, run } = await parkedRun();
    const { worker: stopped } = await clients.catalog.stopWorker({ worker });
    expect(stopped?.status).toBe(WorkerStatus.STOPPED);
    expect((await getRun(clients, worker, run.runId)).status).toBe(RunStatus.CANCELLED);
    const again = await serve(new ScriptedBackend());
    expect((await getRun(again, worker, run.runId)).status).toBe(RunStatus.CANCELLED);
    expect((await again.catalog.getWorker({ worker })).worker?.status).toBe(WorkerStatus.STOPPED);
  });

  it("a resumed run cancelled before its backend reaches the decided call records that call as not run", async () => {
    let started!: () => void;
    const running = new Promise<void>((resolve) => (started = resolve));
    // This resumed execution never asks about the call: it waits for the cancel.
    const { clients, worker, run } = await parkedRun([], async (_request, _sink, signal) => {
      started();
      await new Promise((resolve) => signal.addEventListener("abort", resolve, { once: true }));
      return { kind: "cancelled" };
    });
    await clients.interaction.resolveApproval({ worker, runId: run.runId, toolCallId: "c1", decision: ApprovalDecision.APPROVE });
    await running;
    await clients.interaction.cancelRun({ worker, runId: run.runId });
    expect((await getRun(clients, worker, run.runId)).status).toBe(RunStatus.CANCELLED);
    expect((await toolResults(clients, worker)).map((r) => r.output)).toEqual([CANCELLED_UNRUN]);
  });
});

describe("the approval wait's durability", () => {
  it("shows the wait (GetRun, ResolveApproval) only once its record is durable", async () => {
    const inner = createMemoryStore();
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    let waitWritten = false;
    const store: RuntimeStore = Object.assign(Object.create(inner) as RuntimeStore, {
      putRun: async (...args: Parameters<RuntimeStore["putRun"]>) => {
        if (args[1].status === RunStatus.AWAITING_APPROVAL) {
          waitWritten = true;
          await held;
        }
        return inner.putRun(...args);
      },
    });
    const asked: Asked[] = [];
    const runtime = await createRuntime({ store, executionBackend: new ScriptedBackend().enqueue(approvalScript(asked)) });
    try {
      const { worker } = await runtime.createWorker(create(CreateWorkerRequestSchema, { runtimeId: runtime.runtimeId }));
      const request = create(SendInputRequestSchema, { worker: worker?.ref, input: { text: "write x" } });
      const { runId } = await runtime.sendInput(request);
      await eventually(() => waitWritten, 5_000, "the wait's write");
      const beforeDurable = await runtime.getRun({ worker: worker?.ref, runId });
      expect(beforeDurable.status).toBe(RunStatus.RUNNING);
      expect(beforeDurable.pendingApproval).toBeUndefined();
      const decide = create(ResolveApprovalRequestSchema, {
        worker: worker?.ref,
        runId,
        toolCallId: "c1",
        decision: ApprovalDecision.APPROVE,
      });
      await expect(runtime.resolveApproval(decide)).rejects.toMatchObject({ reason: ErrorReason.APPROVAL_NOT_PENDING });
      release();
      await eventually(async () => (await runtime.getRun({ worker: worker?.ref, runId })).status === RunStatus.AWAITING_APPROVAL);
      await runtime.resolveApproval(decide);
      await eventually(async () => (await runtime.getRun({ worker: worker?.ref, runId })).status === RunStatus.COMPLETED);
      expect(asked.map((a) => a.decision.approved)).toEqual([true]);
    } finally {
      release();
      await runtime.close();
    }
  });
});
