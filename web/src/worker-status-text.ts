import { type Run, RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { ActiveRunState, ConnectivityState, type Worker, WorkerStatus } from "../../gen/worker_runtime/v1/worker_pb.js";

/** The header's words while the worker's run waits for the reader to approve or reject a tool call. */
export const WAITING_FOR_APPROVAL = "waiting for approval";

/** WorkerStatus's values in words, by number. */
const STATUS_WORDS = ["unknown", "idle", "running", "stopped", "failed"];

/**
 * A value a newer runtime added, which this console has no word for: its
 * number says which to an operator (the CLI shows `UNKNOWN(n)`), where a
 * bare "unknown" read like the UNSPECIFIED of a broken peer.
 */
export function unknownValue(value: number): string {
  return `unknown (${value})`;
}

/**
 * "idle", "running", … for the sidebar and the chat header: status words
 * rather than enum names. A run waiting for approval reads "waiting for
 * approval": the worker's own status says RUNNING then, and a header saying
 * "running" beside a panel asking the reader to decide told them the
 * opposite of what was happening. The sidebar has only the listed worker,
 * whose active_run_state says so. The chat watches the active run and
 * passes `chat` with it (undefined once none is active), and then only the
 * run counts: the runtime announces a run's change before the worker's, so
 * the worker the chat holds is the staler of the two. Once a run waiting
 * for approval ended (Stop), its worker said AWAITING_APPROVAL until its
 * own update came, and the header read "waiting for approval" meanwhile.
 */
export function workerStatusText(worker: Worker, chat?: { activeRun: Run | undefined }): string {
  const awaiting = chat
    ? chat.activeRun?.status === RunStatus.AWAITING_APPROVAL
    : worker.activeRunState === ActiveRunState.AWAITING_APPROVAL;
  const waiting = worker.status === WorkerStatus.RUNNING && awaiting;
  const status = waiting ? WAITING_FOR_APPROVAL : (STATUS_WORDS[worker.status] ?? unknownValue(worker.status));
  // Only a worker that could still run is said not to be connected: "failed · not connected" blamed the provider.
  const ended = worker.status === WorkerStatus.STOPPED || worker.status === WorkerStatus.FAILED;
  const connected = !ended && worker.connectivity?.state === ConnectivityState.NOT_CONNECTED ? " · not connected" : "";
  return `${status}${connected}`;
}
