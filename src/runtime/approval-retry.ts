import { create } from "@bufbuild/protobuf";
import { ResolvedApprovalSchema, type Run } from "../../gen/worker_runtime/v1/run_pb.js";
import { ApprovalDecision, type ResolveApprovalRequest } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import { idempotencyConflict } from "./errors.js";
// A retry of a decision older than the last MAX_RESOLVED_APPROVALS is answered as a repeat without a request_id.
import { MAX_RESOLVED_APPROVALS } from "./limits.js";

/** What a ResolveApproval asks, after validation. */
export type ApprovalRequest = Pick<ResolveApprovalRequest, "runId" | "toolCallId" | "decision" | "reason" | "requestId">;

/**
 * Whether `request` repeats a decision already taken on `run` with the same
 * request_id. The record lives in the run itself, so it is as durable as the
 * decision (written with the run that leaves AWAITING_APPROVAL) and a retry
 * after a restart is recognised without another index. The same request_id
 * with another tool call, decision or reason is IDEMPOTENCY_CONFLICT.
 */
export function isRetryOf(run: Run, request: ApprovalRequest): boolean {
  if (request.requestId === "") return false;
  const prior = run.resolvedApprovals.find((resolved) => resolved.requestId === request.requestId);
  if (prior === undefined) return false;
  const same =
    prior.toolCallId === request.toolCallId &&
    prior.approved === (request.decision === ApprovalDecision.APPROVE) &&
    prior.reason === request.reason;
  if (!same) throw idempotencyConflict(request.requestId, "with another decision", { run_id: run.runId, tool_call_id: prior.toolCallId });
  return true;
}

/** Notes a decision taken with a request_id on its run (before the run is written), keeping the last {@link MAX_RESOLVED_APPROVALS}. */
export function noteDecision(run: Run, request: ApprovalRequest): void {
  if (request.requestId === "") return;
  const { requestId, toolCallId, reason } = request;
  run.resolvedApprovals.push(
    create(ResolvedApprovalSchema, { requestId, toolCallId, approved: request.decision === ApprovalDecision.APPROVE, reason }),
  );
  if (run.resolvedApprovals.length > MAX_RESOLVED_APPROVALS) run.resolvedApprovals.shift();
}

/** Takes back a noted decision that could not be recorded. */
export function unnoteDecision(run: Run, request: ApprovalRequest): void {
  if (request.requestId === "") return;
  run.resolvedApprovals = run.resolvedApprovals.filter((resolved) => resolved.requestId !== request.requestId);
}
