import { create } from "@bufbuild/protobuf";
import { NoticeSchema, ToolResultSchema, type ToolResult } from "../../gen/worker_runtime/v1/transcript_pb.js";
import type { WorkerJournal } from "./worker-journal.js";

/**
 * The transcript entries a run that did not complete commits before it
 * shows as ended, so that a reader of the transcript (and the model's next
 * turn) sees why it stopped. A run its runtime's stop interrupted has its
 * own (interrupted-notice.ts), written with the run's record.
 */
type Journal = Pick<WorkerJournal, "commitEntry">;

/** Commits a failed run's notice; a failed write is reported (health), not thrown: the run ends anyway. */
export async function commitFailureNotice(journal: Journal, runId: string, message: string): Promise<void> {
  const notice = create(NoticeSchema, { code: "run.failed", message });
  await journal.commitEntry(runId, { case: "notice", value: notice }).catch(() => {});
}

/**
 * Commits the result of a tool call that waited for approval and never ran
 * (its run was cancelled or ended first), so the transcript stays a valid
 * conversation. A failed write is reported (health), not thrown.
 */
export async function commitUnrunResult(
  journal: Journal,
  runId: string,
  call: Pick<ToolResult, "toolCallId" | "toolName">,
  cancelled: boolean,
): Promise<void> {
  const why = cancelled ? "The run was cancelled" : "The run ended";
  const output = `${why} before this tool call ran, so it did not run.`;
  const result = create(ToolResultSchema, { toolCallId: call.toolCallId, toolName: call.toolName, output, isError: true });
  await journal.commitEntry(runId, { case: "toolResult", value: result }).catch(() => {});
}
