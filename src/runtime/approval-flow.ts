import { cloneMessage } from "./message-clone.js";
import { RunSchema, RunStatus, type Run } from "../../gen/worker_runtime/v1/run_pb.js";
import { ApprovalDecision } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import { isRetryOf, noteDecision, unnoteDecision, type ApprovalRequest } from "./approval-retry.js";
import type { ApprovalResult } from "./execution-backend.js";
import type { InputOptions } from "./runtime-api.js";
import { callerTraceContext } from "./run-tracing.js";
import { launchRun, settledWithin, type ExecutionHost } from "./run-execution.js";
import { checkAcceptsInput } from "./run-queue.js";
import { approvalNotPending, restoreApproval, takeApproval } from "./run-sink.js";
import { activeOf, heldRunOf, holdsExecution, type ActiveRun, type RunSlot } from "./run-slot.js";
import { commitUnrunResult } from "./run-end-entries.js";

/** What the approval flow needs of its worker's session. */
export interface ApprovalFlowHost extends ExecutionHost {
  setSlot(slot: RunSlot): void;
  getRun(runId: string): Promise<Run>;
}

/**
 * A worker's tool approvals: deciding a live wait, and the parked state
 * (run-slot.ts) that makes a wait survive a restart — parking at shutdown,
 * resuming on the decision, ending a parked run. Every decision is recorded
 * (run RUNNING) before the tool may run, so a tool never runs while the
 * stored run still offers its call; a crash after a decision leaves a
 * RUNNING run, INTERRUPTED on restart, rather than a call that might run twice.
 */
export class ApprovalFlow {
  constructor(private readonly host: ApprovalFlowHost) {}

  /**
   * Approves or rejects the call a run waits on, live or parked (a resumed run logs with the caller's log fields, its span the caller's child).
   * A retry of a decision taken with the same request_id answers the run as it is now, as a SendInput retry does (approval-retry.ts).
   */
  async resolve(request: ApprovalRequest, caller?: InputOptions): Promise<Run> {
    const { runId, toolCallId } = request;
    if (request.requestId !== "") {
      // The held run is read in this tick, so a concurrent twin that took the approval first is seen.
      const held = heldRunOf(this.host.slot());
      if (isRetryOf(held?.runId === runId ? held : await this.host.getRun(runId), request)) return this.host.getRun(runId);
    }
    const result: ApprovalResult = { approved: request.decision === ApprovalDecision.APPROVE, reason: request.reason };
    const slot = this.host.slot();
    if (slot.kind === "parked" && slot.run.runId === runId) return this.resume(slot.run, request, result, caller);
    const active = activeOf(slot);
    const taken = active ? takeApproval(active, runId, toolCallId) : undefined;
    if (!active || !taken) {
      await this.host.getRun(runId);
      throw approvalNotPending(runId, toolCallId);
    }
    noteDecision(active.run, request);
    const answered = cloneMessage(RunSchema, active.run);
    const recorded = this.host.journal.recordRun(active.run);
    this.host.journal.activeRunChanged(active.run);
    try {
      await recorded;
    } catch (error) {
      // Not recorded: the run still waits, unless it ended meanwhile; either way nothing was decided.
      unnoteDecision(active.run, request);
      if (holdsExecution(this.host.slot(), active) && !active.controller.signal.aborted) {
        restoreApproval(active, taken);
        this.host.journal.activeRunChanged(active.run);
      }
      throw error;
    }
    taken.wait.resolve(result);
    return answered;
  }

  /**
   * Sets a run that waits for approval aside at shutdown: its stored record
   * already says AWAITING_APPROVAL with the call (the run shows the wait only
   * once that is durable, see run-sink.ts), so the slot parks it and
   * its execution ends without writing anything (the sink is closed before
   * the abort, so the backend cannot record the call as cancelled).
   */
  async park(active: ActiveRun): Promise<void> {
    this.host.setSlot({ kind: "parked", run: active.run });
    active.approval = undefined;
    active.controller.abort();
    await settledWithin(active.done, this.host.deps.limits.cancelGraceMs);
  }

  /**
   * Ends a parked run CANCELLED (CancelRun, StopWorker, INTERRUPT). Its
   * pending call gets a result saying it did not run, as a cancel during a
   * live wait records, so the transcript stays a valid conversation.
   */
  async endParked(run: Run): Promise<Run> {
    const pending = run.pendingApproval;
    // Issued before the run's end (so it comes first in the stream); the slot is freed in the same tick.
    const noted = pending ? commitUnrunResult(this.host.journal, run.runId, pending, true) : undefined;
    await Promise.all([noted, this.host.endHeldRun(run, { kind: "cancelled" })]);
    return cloneMessage(RunSchema, run);
  }

  /**
   * Decides a parked run's pending call and starts its execution again in
   * resume mode; answers once the run is durably RUNNING (the execution
   * waits for that write too, so the tool runs only after it).
   */
  private async resume(run: Run, request: ApprovalRequest, result: ApprovalResult, caller: InputOptions | undefined): Promise<Run> {
    const { toolCallId } = request;
    const pending = run.pendingApproval;
    if (pending?.toolCallId !== toolCallId) throw approvalNotPending(run.runId, toolCallId);
    this.host.deps.checkAcceptingWork();
    checkAcceptsInput(this.host.worker, this.host.deps.backend !== undefined);
    run.status = RunStatus.RUNNING;
    run.pendingApproval = undefined;
    noteDecision(run, request);
    const decided = { call: { toolCallId, toolName: pending.toolName }, result };
    const { logFields } = caller ?? {};
    const traceContext = callerTraceContext(caller?.traceContext);
    const active: ActiveRun = { run, controller: new AbortController(), decided, done: Promise.resolve(), logFields, traceContext };
    this.host.setSlot({ kind: "running", active });
    const answered = cloneMessage(RunSchema, run);
    const recorded = this.host.journal.recordRun(run);
    this.host.journal.activeRunChanged(run);
    launchRun(active, this.host, { resume: { toolCallId }, recorded });
    await recorded;
    return answered;
  }
}
