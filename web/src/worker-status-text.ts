import { type Run, RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { ActiveRunState, ConnectivityState, type Worker, WorkerStatus } from "../../gen/worker_runtime/v1/worker_pb.js";

/** The header's words while the worker's run waits for the reader to approve or reject a tool call. */
export const WAITING_FOR_APPROVAL = "waiting for approval";

/**
 * "idle", "running", … for the sidebar and the chat header: status words
 * rather than enum names. A run waiting for approval reads "waiting for
 * approval": the worker's own status says RUNNING then, and a header saying
 * "running" beside a panel asking the reader to decide told them the
 * opposite of what was happening. The chat watches the active run and
 * passes it (its run_changed comes before the worker's change); the sidebar
 * has only the listed worker, whose active_run_state says the same.
 */
export function workerStatusText(worker: Worker, activeRun?: Run): string {
  const awaiting = activeRun
    ? activeRun.status === RunStatus.AWAITING_APPROVAL
    : worker.activeRunState === ActiveRunState.AWAITING_APPROVAL;
  const waiting = worker.status === WorkerStatus.RUNNING && awaiting;
  const status = waiting ? WAITING_FOR_APPROVAL : (["unknown", "idle", "running", "stopped", "failed"][worker.status] ?? "unknown");
  // Only a worker that could still run is said not to be connected: "failed · not connected" blamed the provider.
  const ended = worker.status === WorkerStatus.STOPPED || worker.status === WorkerStatus.FAILED;
  const connected = !ended && worker.connectivity?.state === ConnectivityState.NOT_CONNECTED ? " · not connected" : "";
  return `${status}${connected}`;
}
