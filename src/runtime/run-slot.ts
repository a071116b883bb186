import type { Context } from "@opentelemetry/api";
import { RunStatus, type Run } from "../../gen/worker_runtime/v1/run_pb.js";
import { ActiveRunState, type Worker } from "../../gen/worker_runtime/v1/worker_pb.js";
import type { ApprovalResult, PendingToolCall } from "./execution-backend.js";
import type { LogFields } from "./logger.js";

/** The tool call a run waits on, and how to answer it. */
export interface ApprovalWait {
  toolCallId: string;
  resolve(result: ApprovalResult): void;
}

/** A decision taken while the run was parked, for its resumed execution. */
export interface RecordedDecision {
  call: Pick<PendingToolCall, "toolCallId" | "toolName">;
  result: ApprovalResult;
}

/** The run that holds a worker's slot, while its execution lasts. */
export interface ActiveRun {
  readonly run: Run;
  readonly controller: AbortController;
  /** Set while the run waits for a ResolveApproval. */
  approval?: ApprovalWait;
  /**
   * Set on a run resumed from the parked state: the decision its sink gives
   * at once when the backend asks for that call's approval (then cleared).
   * Still set when the run ends means the backend never got to the call.
   */
  decided?: RecordedDecision;
  /** Settles when the execution has returned and the run has ended. */
  done: Promise<void>;
  /** The log fields of the call that started the run (its request id), on every line the run logs. */
  readonly logFields?: LogFields | undefined;
  /** The trace context of the call that started or resumed the run: its span's parent (run-tracing.ts). */
  readonly traceContext?: Context | undefined;
}

/**
 * A worker's single-flight run slot. One value says what the slot holds,
 * so "is the worker busy", "is this run still open" and "was it
 * interrupted" cannot disagree:
 * - idle: nothing runs;
 * - starting: a run was accepted on an idle worker and starts once its
 *   acceptance is durable (later input already sees the worker busy);
 * - running: a run executes;
 * - stopping: the running run was cancelled and has up to the grace period
 *   to wind down; `interrupted` (shutdown) makes it INTERRUPTED, not CANCELLED;
 * - parked: the run waits in AWAITING_APPROVAL with no execution in memory
 *   (restored so after a restart, or set aside by a shutdown). Its record,
 *   pending call included, is durable; ResolveApproval starts its execution
 *   again in resume mode, CancelRun/StopWorker/INTERRUPT end it CANCELLED.
 * A run is open to its sink exactly while the slot holds its execution.
 */
export type RunSlot =
  | { kind: "idle" }
  | { kind: "starting"; run: Run }
  | { kind: "running"; active: ActiveRun }
  | { kind: "stopping"; active: ActiveRun; interrupted: boolean }
  | { kind: "parked"; run: Run };

/** The executing run, if any (running or stopping). */
export function activeOf(slot: RunSlot): ActiveRun | undefined {
  return slot.kind === "running" || slot.kind === "stopping" ? slot.active : undefined;
}

/** The run the slot holds past its start (executing or parked), as it is now. */
export function heldRunOf(slot: RunSlot): Run | undefined {
  return slot.kind === "parked" ? slot.run : activeOf(slot)?.run;
}

/** The run that makes the worker busy, if any. */
export function busyRunOf(slot: RunSlot): Run | undefined {
  return slot.kind === "starting" ? slot.run : heldRunOf(slot);
}

/** Whether the slot still holds this execution (it has not ended or been parked). */
export function holdsExecution(slot: RunSlot, active: ActiveRun): boolean {
  return activeOf(slot) === active;
}

/**
 * Worker.active_run_state for a worker's active run: executing, or waiting
 * for a tool-call approval. A worker's status is RUNNING either way, so this
 * is what lets a worker list say "waiting for approval" without watching the
 * run. UNSPECIFIED when no run is in flight (or the run has ended).
 */
export function activeRunStateOf(run: Run | undefined): ActiveRunState {
  if (run?.status === RunStatus.RUNNING) return ActiveRunState.RUNNING;
  if (run?.status === RunStatus.AWAITING_APPROVAL) return ActiveRunState.AWAITING_APPROVAL;
  return ActiveRunState.UNSPECIFIED;
}

/**
 * Makes `run` (or none) the worker's active run: its id and its state are set
 * together, so no place that starts or clears a run can leave them disagreeing.
 */
export function setActiveRun(worker: Worker, run: Run | undefined): void {
  worker.activeRunId = run?.runId ?? "";
  worker.activeRunState = activeRunStateOf(run);
}
