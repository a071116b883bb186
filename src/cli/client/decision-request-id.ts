import type { ApprovalDecision } from "../../../gen/worker_runtime/v1/worker_interaction_pb.js";
import { sha256Hex } from "./sha256.js";

/**
 * The request id of an approval decision when none is given: derived from
 * what is decided (request ids are scoped to the run), so deciding the same
 * again after a lost answer is a retry the server recognises, while another
 * decision on the same call is not. Shared by the CLI's approve/reject and
 * the web console's approval panel (so it imports nothing Node-only): the
 * same decision from either is the same request.
 */
export function decisionRequestId(decision: ApprovalDecision, toolCallId: string, reason: string): string {
  return `cli-${sha256Hex(`${decision}\0${toolCallId}\0${reason}`).slice(0, 40)}`;
}
