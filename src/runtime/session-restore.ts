import { clone, create } from "@bufbuild/protobuf";
import { WorkerEventSchema, type WorkerEvent } from "../../gen/worker_runtime/v1/events_pb.js";
import { RunSchema, RunStatus, type Run } from "../../gen/worker_runtime/v1/run_pb.js";
import { type Connectivity, WorkerSchema, WorkerStatus, type Worker } from "../../gen/worker_runtime/v1/worker_pb.js";
import { endRun } from "./run-execution.js";
import type { RestoredWorker } from "./store.js";
import type { WorkerJournal } from "./worker-journal.js";

/**
 * A restored worker's state, fixed before its session exists so that its
 * observed state (what snapshots show) starts from it: nothing runs any
 * more, except that a run waiting for approval still waits (`parked`: the
 * worker stays RUNNING with it as its active run, see run-slot.ts); a
 * quarantined worker is FAILED with the reason; and connectivity is derived
 * from this runtime's configuration, not from what was stored. `wasBusy`
 * says the stored snapshot must be rewritten.
 */
export function restoredWorkerState(
  restored: RestoredWorker,
  connectivity: Connectivity,
): { worker: Worker; wasBusy: boolean; parked: Run | undefined } {
  const worker = clone(WorkerSchema, restored.record.worker);
  const wasBusy = worker.status === WorkerStatus.RUNNING || worker.activeRunId !== "" || worker.queuedRuns !== 0;
  const parked = parkedRunOf(restored);
  worker.lastEventSeq = restored.lastEventSeq;
  worker.connectivity = connectivity;
  if (restored.quarantined !== undefined) {
    worker.status = WorkerStatus.FAILED;
    worker.failureMessage = restored.quarantined;
  } else if (parked) {
    worker.status = WorkerStatus.RUNNING;
  } else if (worker.status === WorkerStatus.RUNNING) {
    worker.status = WorkerStatus.IDLE;
  }
  worker.activeRunId = parked?.runId ?? "";
  worker.queuedRuns = 0;
  return { worker, wasBusy, parked };
}

/**
 * The run that keeps waiting for approval across the restart: one stored
 * AWAITING_APPROVAL with its pending call, on a worker that still takes
 * input (a stopped or quarantined worker's runs all end). Single flight
 * allows one; should a damaged history hold several, the newest waits.
 */
function parkedRunOf(restored: RestoredWorker): Run | undefined {
  if (restored.quarantined !== undefined) return undefined;
  const status = restored.record.worker.status;
  if (status === WorkerStatus.STOPPED || status === WorkerStatus.FAILED) return undefined;
  const waiting = restored.unfinishedRuns.filter((run) => run.status === RunStatus.AWAITING_APPROVAL && run.pendingApproval !== undefined);
  return waiting.at(-1);
}

/**
 * Ends the runs the restart interrupted (all unfinished ones but the parked
 * run) and rewrites the worker's snapshot if it was stored busy. A failed
 * write (disk full) is reported, not fatal: reads show the run interrupted
 * (unsaved-runs.ts).
 */
export async function interruptUnfinished(
  restored: RestoredWorker,
  parked: Run | undefined,
  wasBusy: boolean,
  journal: WorkerJournal,
  now: Date,
): Promise<void> {
  for (const run of restored.unfinishedRuns) {
    if (run === parked) continue;
    endRun(run, { kind: "cancelled" }, true, now);
    await journal.recordRun(run).catch(() => {});
  }
  if (wasBusy || restored.unfinishedRuns.length > 0) await journal.saveWorker().catch(() => {});
}

/**
 * The parked run as observers last saw it announced: its AWAITING_APPROVAL
 * event is already in the log, so the observed state is seeded with it and
 * nothing new is announced.
 */
export function parkedRunSeen(parked: Run): WorkerEvent {
  return create(WorkerEventSchema, { kind: { case: "runChanged", value: clone(RunSchema, parked) } });
}
