import type { Run } from "../../gen/worker_runtime/v1/run_pb.js";
import type { ApprovalResult } from "./execution-backend.js";

/** The tool call a run waits on, and how to answer it. */
export interface ApprovalWait {
  toolCallId: string;
  resolve(result: ApprovalResult): void;
}

/** The run that holds a worker's slot, while its execution lasts. */
export interface ActiveRun {
  readonly run: Run;
  readonly controller: AbortController;
  /** Set while the run waits for a ResolveApproval. */
  approval?: ApprovalWait;
  /** Settles when the execution has returned and the run has ended. */
  done: Promise<void>;
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
 *   to wind down; `interrupted` (shutdown) makes it INTERRUPTED, not CANCELLED.
 * A run is open to its sink exactly while the slot holds it.
 */
export type RunSlot =
  | { kind: "idle" }
  | { kind: "starting"; run: Run }
  | { kind: "running"; active: ActiveRun }
  | { kind: "stopping"; active: ActiveRun; interrupted: boolean };

/** The executing run, if any (running or stopping). */
export function activeOf(slot: RunSlot): ActiveRun | undefined {
  return slot.kind === "running" || slot.kind === "stopping" ? slot.active : undefined;
}

/** The run that makes the worker busy, if any. */
export function busyRunOf(slot: RunSlot): Run | undefined {
  return slot.kind === "starting" ? slot.run : activeOf(slot)?.run;
}
