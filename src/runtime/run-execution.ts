import { clone, create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { RunErrorSchema, RunSchema, RunStatus, StopReason, type Run } from "../../gen/worker_runtime/v1/run_pb.js";
import { UserMessageSchema } from "../../gen/worker_runtime/v1/transcript_pb.js";
import { WorkerSchema, type Worker } from "../../gen/worker_runtime/v1/worker_pb.js";
import { abortError, RuntimeError } from "./errors.js";
import type { RunOutcome, RunSink } from "./execution-backend.js";
import type { ActiveRun } from "./run-slot.js";
import type { SessionDeps } from "./session-deps.js";
import { isStoreWriteFailure } from "./store-errors.js";

/**
 * Executes one run on the backend: commits the user's message, hands the
 * backend the run with its worker, profile, capabilities, workspace and a
 * bounded transcript reader, and turns whatever happens into an outcome.
 * Never throws: a cancelled run is "cancelled" whatever the backend did,
 * typed errors keep their reason, store failures become STORE_UNAVAILABLE
 * and anything else INTERNAL (its text only in the log).
 */
export async function executeRun(
  active: ActiveRun,
  sink: RunSink,
  worker: Worker,
  lastTranscriptSeq: () => bigint,
  deps: SessionDeps,
): Promise<RunOutcome> {
  const { run, controller } = active;
  const workerId = worker.ref?.workerId ?? "";
  let outcome: RunOutcome;
  try {
    await sink.commit({ case: "userMessage", value: create(UserMessageSchema, { text: run.input?.text ?? "" }) });
    const backend = deps.backend;
    if (!backend) throw new RuntimeError(Code.FailedPrecondition, ErrorReason.WORKER_NOT_CONNECTED, "no execution backend");
    if (controller.signal.aborted) throw abortError();
    const workspaceDir = deps.workspaceDirOf(worker);
    outcome = await backend.execute(
      {
        worker: clone(WorkerSchema, worker),
        profile: deps.profileOf(worker),
        run: clone(RunSchema, run),
        capabilities: [...worker.capabilities],
        readTranscript: (beforeSeq, limit) =>
          deps.store.readTranscript(
            workerId,
            { kind: "before", beforeSeq: beforeSeq ?? lastTranscriptSeq() + 1n },
            Math.min(limit, deps.limits.maxTranscriptRead),
          ),
        ...(workspaceDir !== undefined ? { workspaceDir } : {}),
      },
      sink,
      controller.signal,
    );
  } catch (error) {
    if (controller.signal.aborted) {
      outcome = { kind: "cancelled" };
    } else if (error instanceof RuntimeError) {
      outcome = { kind: "failed", reason: error.reason, message: error.message };
    } else if (isStoreWriteFailure(error)) {
      outcome = { kind: "failed", reason: ErrorReason.STORE_UNAVAILABLE, message: "the runtime could not persist the run" };
    } else {
      deps.logger.error("execution backend threw", { worker_id: workerId, run_id: run.runId, cause: String(error) });
      outcome = { kind: "failed", reason: ErrorReason.INTERNAL, message: "the execution backend failed unexpectedly" };
    }
  }
  if (controller.signal.aborted && outcome.kind !== "completed") outcome = { kind: "cancelled" };
  return outcome;
}

/** Sets a run's final status, stop reason and error from its outcome. */
export function endRun(run: Run, outcome: RunOutcome, interrupted: boolean, now: Date): void {
  run.pendingApproval = undefined;
  run.endedAt = timestampFromDate(now);
  switch (outcome.kind) {
    case "completed":
      run.status = RunStatus.COMPLETED;
      run.stopReason = outcome.stopReason;
      break;
    case "cancelled":
      run.status = interrupted ? RunStatus.INTERRUPTED : RunStatus.CANCELLED;
      run.stopReason = interrupted ? StopReason.INTERRUPTED_BY_RESTART : StopReason.CANCELLED;
      break;
    case "failed":
      run.status = RunStatus.FAILED;
      run.stopReason = StopReason.ERROR;
      run.error = create(RunErrorSchema, { reason: outcome.reason, message: outcome.message, metadata: outcome.metadata ?? {} });
      break;
  }
}

/** Waits for `done`, but at most `ms` (a cancelled run's grace period). */
export async function settledWithin(done: Promise<void>, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const grace = new Promise<void>((resolve) => {
    timer = setTimeout(resolve, ms);
  });
  await Promise.race([done, grace]);
  clearTimeout(timer);
}
