import { create, fromBinary } from "@bufbuild/protobuf";
import { cloneMessage } from "./message-clone.js";
import { timestampDate, timestampMs } from "@bufbuild/protobuf/wkt";
import { WorkerEventSchema, type WorkerEvent } from "../../gen/worker_runtime/v1/events_pb.js";
import { RunSchema, RunStatus, type Run } from "../../gen/worker_runtime/v1/run_pb.js";
import { type Connectivity, WorkerSchema, WorkerStatus, type Worker } from "../../gen/worker_runtime/v1/worker_pb.js";
import { addUsage, usageOf } from "./run-sink.js";
import { setActiveRun } from "./run-slot.js";
import { endRun } from "./run-execution.js";
import type { RestoredWorker, RuntimeStore } from "./store.js";
import { DAMAGED_WORKER_MESSAGE } from "./store-errors.js";
import { interruptedNoticeWritten, tellsInterruption } from "./interrupted-notice.js";
import type { WorkerJournal } from "./worker-journal.js";

/**
 * A restored worker's state, fixed before its session exists so that its
 * observed state (what snapshots show) starts from it: nothing runs any
 * more, except that a run waiting for approval still waits (`parked`: the
 * worker stays RUNNING with it as its active run, see run-slot.ts); a
 * quarantined worker is FAILED, its users told so in plain words; and connectivity is derived
 * from this runtime's configuration, not from what was stored. `wasBusy`
 * says the stored snapshot must be rewritten.
 */
export function restoredWorkerState(
  restored: RestoredWorker,
  connectivity: Connectivity,
): { worker: Worker; wasBusy: boolean; parked: Run | undefined } {
  const worker = cloneMessage(WorkerSchema, restored.record.worker);
  const wasBusy = worker.status === WorkerStatus.RUNNING || worker.activeRunId !== "" || worker.queuedRuns !== 0;
  const parked = parkedRunOf(restored);
  worker.lastEventSeq = restored.lastEventSeq;
  worker.connectivity = connectivity;
  if (restored.quarantined !== undefined) {
    worker.status = WorkerStatus.FAILED;
    worker.failureMessage = DAMAGED_WORKER_MESSAGE;
  } else if (parked) {
    worker.status = WorkerStatus.RUNNING;
  } else if (worker.status === WorkerStatus.RUNNING) {
    worker.status = WorkerStatus.IDLE;
  }
  setActiveRun(worker, parked);
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
 *
 * Each ends when it was last known alive ({@link lastRecordedAt}), not now:
 * the restart may come hours after the crash, and ended_at - started_at
 * (GetRun, worker_runtime_run_duration_seconds) would count the outage as
 * run time.
 *
 * One that had started tells its interruption in the transcript (a
 * `run.interrupted` notice, see WorkerJournal.recordInterrupted), unless
 * an earlier start (or the drain) wrote it and stopped before the run's
 * record: the record follows the notice, so only a run still unfinished
 * on disk is searched for one.
 */
export async function interruptUnfinished(
  restored: RestoredWorker,
  parked: Run | undefined,
  wasBusy: boolean,
  journal: WorkerJournal,
  store: Pick<RuntimeStore, "readEvents" | "readTranscript">,
  worker: Worker,
): Promise<void> {
  const interrupted = restored.unfinishedRuns.filter((run) => run !== parked);
  const lastRecorded = interrupted.length > 0 ? await lastRecordedAt(store, restored) : undefined;
  for (const run of interrupted) {
    endRun(run, { kind: "cancelled" }, true, endOfInterrupted(run, lastRecorded));
    // As a run ending while served adds its usage (worker-session.ts endHeldRun): its tokens were spent.
    addUsage(usageOf(worker), run.usage);
    const written =
      tellsInterruption(run) && (await interruptedNoticeWritten(store, workerIdOf(restored), restored.lastTranscriptSeq, run.runId));
    await journal.recordInterrupted(run, "restart", written).catch(() => {});
  }
  if (wasBusy || restored.unfinishedRuns.length > 0) await journal.saveWorker().catch(() => {});
}

/**
 * When the worker last recorded anything before the stop: the time of its
 * last durable event. Runs are single-flight, so for its unfinished runs
 * that is the latest moment they are known to have been alive (or waiting).
 * Undefined when there is no event, or it cannot be read.
 */
async function lastRecordedAt(store: Pick<RuntimeStore, "readEvents">, restored: RestoredWorker): Promise<Date | undefined> {
  if (restored.lastEventSeq === 0n) return undefined;
  try {
    const [last] = await store.readEvents(workerIdOf(restored), restored.lastEventSeq - 1n, 1);
    const time = last ? fromBinary(WorkerEventSchema, last.bytes).time : undefined;
    return time ? timestampDate(time) : undefined;
  } catch {
    return undefined;
  }
}

function workerIdOf(restored: RestoredWorker): string {
  return restored.record.worker.ref?.workerId ?? "";
}

/** The end of a run the restart interrupted: the last record, never before the run's own times. */
function endOfInterrupted(run: Run, lastRecorded: Date | undefined): Date {
  const known = [run.createdAt, run.startedAt, run.lastRetry?.time].flatMap((t) => (t ? [timestampMs(t)] : []));
  return new Date(Math.max(lastRecorded?.getTime() ?? 0, ...known));
}

/**
 * The parked run as observers last saw it announced: its AWAITING_APPROVAL
 * event is already in the log, so the observed state is seeded with it and
 * nothing new is announced.
 */
export function parkedRunSeen(parked: Run): WorkerEvent {
  return create(WorkerEventSchema, { kind: { case: "runChanged", value: cloneMessage(RunSchema, parked) } });
}
