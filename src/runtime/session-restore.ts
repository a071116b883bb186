import { clone } from "@bufbuild/protobuf";
import { type Connectivity, WorkerSchema, WorkerStatus, type Worker } from "../../gen/worker_runtime/v1/worker_pb.js";
import type { RestoredWorker } from "./store.js";

/**
 * A restored worker's state, fixed before its session exists so that its
 * observed state (what snapshots show) starts from it: nothing runs or
 * waits any more, a quarantined worker is FAILED with the reason, and
 * connectivity is derived from this runtime's configuration, not from what
 * was stored. `wasBusy` says the stored snapshot must be rewritten.
 */
export function restoredWorkerState(restored: RestoredWorker, connectivity: Connectivity): { worker: Worker; wasBusy: boolean } {
  const worker = clone(WorkerSchema, restored.record.worker);
  const wasBusy = worker.status === WorkerStatus.RUNNING || worker.activeRunId !== "" || worker.queuedRuns !== 0;
  worker.lastEventSeq = restored.lastEventSeq;
  worker.connectivity = connectivity;
  if (restored.quarantined !== undefined) {
    worker.status = WorkerStatus.FAILED;
    worker.failureMessage = restored.quarantined;
  } else if (worker.status === WorkerStatus.RUNNING) {
    worker.status = WorkerStatus.IDLE;
  }
  worker.activeRunId = "";
  worker.queuedRuns = 0;
  return { worker, wasBusy };
}
