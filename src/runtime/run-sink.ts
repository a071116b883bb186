import { create } from "@bufbuild/protobuf";
import { cloneMessage } from "./message-clone.js";
import { withWellFormedStrings } from "./well-formed-strings.js";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { UsageSchema, type Usage } from "../../gen/worker_runtime/v1/common_pb.js";
import {
  InFlightBlockDiscardedSchema,
  ReasoningDeltaSchema,
  RetryScheduledSchema,
  TextDeltaSchema,
  ToolCallDeltaSchema,
  WorkerEventSchema,
  type ReasoningDelta,
  type TextDelta,
  type ToolCallDelta,
  type WorkerEvent,
} from "../../gen/worker_runtime/v1/events_pb.js";
import {
  PendingApprovalSchema,
  ProviderRetrySchema,
  RunSchema,
  RunStatus,
  type PendingApproval,
} from "../../gen/worker_runtime/v1/run_pb.js";
import { abortError, RuntimeError } from "./errors.js";
import type { DurableEventStream } from "./event-stream.js";
import { byteBounds, MAX_RUN_ERROR_MESSAGE_BYTES, type Limits, runPayloadRoom } from "./limits.js";
import { cutUtf8 } from "./utf8-cut.js";
import { RunOutputBounds } from "./run-output-bounds.js";
import { RunClosedError, type ApprovalResult, type PendingToolCall, type RunSink } from "./execution-backend.js";
import type { ActiveRun, ApprovalWait } from "./run-slot.js";
import type { WorkerJournal } from "./worker-journal.js";

const WORKER_EVENT = WorkerEventSchema.typeName as WorkerEvent["$typeName"];
const TEXT_DELTA = TextDeltaSchema.typeName as TextDelta["$typeName"];
const REASONING_DELTA = ReasoningDeltaSchema.typeName as ReasoningDelta["$typeName"];
const TOOL_CALL_DELTA = ToolCallDeltaSchema.typeName as ToolCallDelta["$typeName"];

/** What a run's sink writes through. */
export interface RunSinkHost {
  events: DurableEventStream<WorkerEvent>;
  journal: WorkerJournal;
  now(): Date;
  /** Whether the slot still holds the run: once it has ended, its sink refuses every call. */
  isOpen(active: ActiveRun): boolean;
  /** The runtime's limits: a run's output is bounded so that it can be delivered (limits.ts, byteBounds). */
  limits: Pick<Limits, "maxMessageBytes" | "maxApprovalReasonBytes">;
}

/**
 * The sink an execution backend writes one run through: deltas go live to
 * watchers only, committed entries are durable transcript, usage and turns
 * count on the run. Every call after the run ended throws RunClosedError.
 */
export function createRunSink(active: ActiveRun, host: RunSinkHost): RunSink {
  const { run } = active;
  /**
   * Usage counted since the run was last written. Tokens the provider counted
   * are spent even if the runtime crashes before the run ends, so a run that
   * goes on after a turn (tools, a resumed stream) is written then, without an
   * event; a one-turn answer is written once, at its end, as before.
   */
  let usageUnsaved = false;
  const saveUsage = (): void => {
    if (!usageUnsaved) return;
    usageUnsaved = false;
    host.journal.saveRunProgress(run);
  };
  const open = (): void => {
    if (!host.isOpen(active)) throw new RunClosedError(`run ${run.runId} has ended`);
  };
  // Deltas are the bulk of a busy stream: their messages are written as
  // complete literals (every field set, as create() would), which costs a
  // twentieth of create()'s reflective initialisation per event.
  const live = (kind: WorkerEvent["kind"]): void => {
    open();
    host.events.emitLive({ $typeName: WORKER_EVENT, seq: 0n, cursor: "", kind });
  };
  const runId = run.runId;
  const output = new RunOutputBounds(runId, byteBounds(host.limits), run.input?.text ?? "", runPayloadRoom(host.limits));
  return {
    textDelta: (blockId, text) => {
      open();
      output.delta(blockId, text);
      live({ case: "textDelta", value: { $typeName: TEXT_DELTA, runId, blockId, text } });
    },
    reasoningDelta: (blockId, text) => {
      open();
      output.delta(blockId, text);
      live({ case: "reasoningDelta", value: { $typeName: REASONING_DELTA, runId, blockId, text } });
    },
    toolCallDelta: (blockId, delta) => {
      open();
      output.delta(blockId, (delta.toolCallId ?? "") + (delta.toolName ?? "") + (delta.argumentsDelta ?? ""));
      live({
        case: "toolCallDelta",
        value: {
          $typeName: TOOL_CALL_DELTA,
          runId,
          blockId,
          toolCallId: delta.toolCallId ?? "",
          toolName: delta.toolName ?? "",
          argumentsDelta: delta.argumentsDelta ?? "",
        },
      });
    },
    discardBlock: (blockId) => {
      output.settle(blockId);
      live({ case: "blockDiscarded", value: create(InFlightBlockDiscardedSchema, { runId, blockId }) });
    },
    commit: async (content, blockId) => {
      open();
      // The turn asked for tools, so the run goes on: its usage so far is written before the tools run.
      if (content.case === "toolCall") saveUsage();
      withWellFormedStrings(content);
      output.checkEntry(content, blockId ?? "");
      if (blockId) output.settle(blockId);
      return host.journal.commitEntry(runId, content, blockId);
    },
    addUsage: (usage) => {
      open();
      addUsage(usageOf(run), create(UsageSchema, usage));
      usageUnsaved = true;
    },
    turn: () => {
      open();
      saveUsage();
      run.turns++;
      usageOf(run).modelRequests++;
    },
    requestApproval: (call, signal) => {
      withWellFormedStrings(call);
      const decided = active.decided;
      if (decided?.call.toolCallId !== call.toolCallId) {
        output.checkPending(call.argumentsJson);
        return awaitApproval(active, call, signal, host);
      }
      // A resumed run: this call was decided while the run was parked.
      open();
      active.decided = undefined;
      return Promise.resolve(decided.result);
    },
    retry: (init) => {
      const wellFormed = withWellFormedStrings(init);
      const retry = create(ProviderRetrySchema, {
        ...wellFormed,
        // A provider's text: bounded as a run's error message is.
        reason: cutUtf8(wellFormed.reason, MAX_RUN_ERROR_MESSAGE_BYTES),
        attempt: uint32(init.attempt),
        delayMs: uint32(init.delayMs),
        ...(init.httpStatus !== undefined ? { httpStatus: uint32(init.httpStatus) } : {}),
        budgetRemainingMs: uint32(init.budgetRemainingMs),
        time: timestampFromDate(host.now()),
      });
      live({ case: "retryScheduled", value: create(RetryScheduledSchema, { runId, retry }) });
      run.retries++;
      run.lastRetry = retry;
    },
  };
}

/**
 * Puts the run in AWAITING_APPROVAL and waits for ResolveApproval, or for
 * the tool's or the run's signal to abort (then rejects with AbortError).
 * The run record, pending call included, is written (not only announced)
 * before the wait counts as begun: a restart then finds the run waiting
 * and parks it instead of interrupting it.
 */
async function awaitApproval(active: ActiveRun, call: PendingToolCall, signal: AbortSignal, host: RunSinkHost): Promise<ApprovalResult> {
  if (!host.isOpen(active)) throw new RunClosedError(`run ${active.run.runId} has ended`);
  const signals = [signal, active.controller.signal];
  if (signals.some((s) => s.aborted)) throw abortError();
  const { run } = active;
  // Listen before the first await: an abort during the write below must not be missed.
  const decision = new Promise<ApprovalResult>((resolve, reject) => {
    const onAbort = (): void => {
      active.approval = undefined;
      for (const s of signals) s.removeEventListener("abort", onAbort);
      reject(abortError());
    };
    for (const s of signals) s.addEventListener("abort", onAbort, { once: true });
    active.approval = {
      toolCallId: call.toolCallId,
      resolve: (result) => {
        for (const s of signals) s.removeEventListener("abort", onAbort);
        resolve(result);
      },
    };
  });
  // An abort during the write below settles `decision` before it is returned: not an unhandled rejection.
  decision.catch(() => undefined);
  // The run shows the wait (GetRun, ResolveApproval) only once it is durable: whoever saw it
  // waiting finds it waiting after a crash too.
  const waiting = cloneMessage(RunSchema, run);
  waiting.status = RunStatus.AWAITING_APPROVAL;
  waiting.pendingApproval = create(PendingApprovalSchema, { ...call, requestedAt: timestampFromDate(host.now()) });
  await host.journal.recordRun(waiting).catch((error: unknown) => {
    active.approval = undefined;
    throw error;
  });
  if (active.approval?.toolCallId === call.toolCallId && host.isOpen(active)) {
    run.status = waiting.status;
    run.pendingApproval = waiting.pendingApproval;
    host.journal.activeRunChanged(run);
  }
  return decision;
}

/** What {@link takeApproval} took off a run, to hand the decision over or put it back. */
export interface TakenApproval {
  wait: ApprovalWait;
  pending: PendingApproval;
}

/**
 * Takes the approval `active` waits on, if it waits on `toolCallId` of run
 * `runId`: the run shows RUNNING again, and nobody else can answer it. The
 * caller makes that durable, then resolves `wait` (or gives it back with
 * {@link restoreApproval} if the write failed). Undefined when no such
 * approval is pending.
 */
export function takeApproval(active: ActiveRun, runId: string, toolCallId: string): TakenApproval | undefined {
  const wait = active.approval;
  const pending = active.run.pendingApproval;
  if (active.run.runId !== runId || !wait || !pending || wait.toolCallId !== toolCallId) return undefined;
  active.approval = undefined;
  active.run.status = RunStatus.RUNNING;
  active.run.pendingApproval = undefined;
  return { wait, pending };
}

/** Puts a taken approval back: the decision could not be recorded, so the run still waits. */
export function restoreApproval(active: ActiveRun, taken: TakenApproval): void {
  active.approval = taken.wait;
  active.run.status = RunStatus.AWAITING_APPROVAL;
  active.run.pendingApproval = taken.pending;
}

/** FAILED_PRECONDITION: the run is not waiting for this tool call (it never did, or was answered or ended). */
export function approvalNotPending(runId: string, toolCallId: string): RuntimeError {
  return new RuntimeError(
    Code.FailedPrecondition,
    ErrorReason.APPROVAL_NOT_PENDING,
    `run ${runId} is not waiting for approval of tool call "${toolCallId}"`,
    { run_id: runId, tool_call_id: toolCallId },
  );
}

/** The usage of a run or worker, created empty the first time it is needed. */
export function usageOf(holder: { usage?: Usage }): Usage {
  if (!holder.usage) holder.usage = create(UsageSchema);
  return holder.usage;
}

/**
 * Adds `from` into `into`, field by field, each count kept within uint64
 * (Usage's type): a backend passes on a provider's numbers, and a JSON count
 * can be negative or past 2^64 - 1. Such a value held by a run or worker made
 * every copy of it fail (clone refuses it): the run was never recorded and
 * the worker could no longer be read. A negative count adds nothing; a sum
 * stops at the top.
 */
export function addUsage(into: Usage, from: Usage | undefined): void {
  if (!from) return;
  into.inputTokens = uint64Sum(into.inputTokens, from.inputTokens);
  into.outputTokens = uint64Sum(into.outputTokens, from.outputTokens);
  into.cachedInputTokens = uint64Sum(into.cachedInputTokens, from.cachedInputTokens);
  into.reasoningTokens = uint64Sum(into.reasoningTokens, from.reasoningTokens);
  into.modelRequests = uint64Sum(into.modelRequests, from.modelRequests);
  into.unreportedRequests = uint64Sum(into.unreportedRequests, from.unreportedRequests);
}

const UINT64_MAX = 2n ** 64n - 1n;
const UINT32_MAX = 2 ** 32 - 1;

/**
 * A backend's number kept within uint32 (a retry's fields' type), whole: a
 * fraction rounds up (a delay is never shown shorter than it is), a negative
 * or NaN is 0, and the rest stops at the top. Kept as given, such a value
 * made the run's record unencodable, and the run failed INTERNAL.
 */
function uint32(value: number): number {
  if (!(value > 0)) return 0;
  return Math.min(Math.ceil(value), UINT32_MAX);
}

function uint64Sum(total: bigint, add: bigint): bigint {
  const sum = total + (add > 0n ? add : 0n);
  return sum > UINT64_MAX ? UINT64_MAX : sum;
}
