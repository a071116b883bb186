import { timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import { ActiveRunState, ConnectivityState, WorkerStatus, type Worker } from "../../../gen/worker_runtime/v1/worker_pb.js";
import { RunStatus } from "../../../gen/worker_runtime/v1/run_pb.js";
import type { Usage } from "../../../gen/worker_runtime/v1/common_pb.js";
import type { Style } from "./output.js";

/** Short human names and colours for enum values and fields. */

/**
 * An enum value's name, or `UNKNOWN(n)` for a number this build does not
 * know: a newer runtime or Backend may send values added after this CLI was
 * built, and an empty cell would read as "none" while the bare number reads
 * as a count.
 */
export function enumName(names: object, value: number): string {
  return (names as Record<number, string | undefined>)[value] ?? `UNKNOWN(${value})`;
}

export function workerStatusName(status: WorkerStatus): string {
  return enumName(WorkerStatus, status);
}

/**
 * A worker's status as `workers list` and `workers get` show it: the status
 * name, and "RUNNING (AWAITING_APPROVAL)" while its active run waits for a
 * tool-call decision. The status alone says RUNNING then, and a list of
 * "running" workers hid the ones waiting for someone to run `approve`.
 */
export function workerStatusText(worker: Worker): string {
  const name = workerStatusName(worker.status);
  return awaitsApproval(worker) ? `${name} (${RunStatus[RunStatus.AWAITING_APPROVAL]})` : name;
}

/** The colour of {@link workerStatusText}: a wait for approval is yellow, as the run's status is. */
export function workerStatusTextStyle(worker: Worker): Style | undefined {
  return awaitsApproval(worker) ? runStatusStyle(RunStatus.AWAITING_APPROVAL) : workerStatusStyle(worker.status);
}

function awaitsApproval(worker: Worker): boolean {
  return worker.status === WorkerStatus.RUNNING && worker.activeRunState === ActiveRunState.AWAITING_APPROVAL;
}

export function runStatusName(status: RunStatus): string {
  return enumName(RunStatus, status);
}

export function workerStatusStyle(status: WorkerStatus): Style | undefined {
  switch (status) {
    case WorkerStatus.IDLE:
      return "green";
    case WorkerStatus.RUNNING:
      return "cyan";
    case WorkerStatus.FAILED:
      return "red";
    case WorkerStatus.STOPPED:
      return "dim";
    default:
      return undefined;
  }
}

export function runStatusStyle(status: RunStatus): Style | undefined {
  switch (status) {
    case RunStatus.COMPLETED:
      return "green";
    case RunStatus.RUNNING:
    case RunStatus.QUEUED:
      return "cyan";
    case RunStatus.AWAITING_APPROVAL:
      return "yellow";
    case RunStatus.CANCELLED:
    case RunStatus.INTERRUPTED:
      return "yellow";
    case RunStatus.FAILED:
      return "red";
    default:
      return undefined;
  }
}

/** "CONNECTED" or "NOT_CONNECTED: reason". */
export function connectivityText(worker: Worker): string {
  const state = worker.connectivity?.state ?? ConnectivityState.UNSPECIFIED;
  const name = enumName(ConnectivityState, state);
  return state === ConnectivityState.NOT_CONNECTED && worker.connectivity?.reason ? `${name}: ${worker.connectivity.reason}` : name;
}

export function profileText(worker: Worker): string {
  const source = worker.profile?.source;
  if (source?.case === "builtin") return source.value;
  if (source?.case === "bundle") return `${source.value.bundleId}/${source.value.profile}`;
  return "";
}

export function labelsText(labels: Record<string, string>): string {
  return Object.entries(labels)
    .map(([key, value]) => `${key}=${value}`)
    .join(",");
}

/** ISO time to the second, or "" when unset. */
export function timeText(timestamp: Timestamp | undefined): string {
  return timestamp
    ? timestampDate(timestamp)
        .toISOString()
        .replace(/\.\d{3}Z$/, "Z")
    : "";
}

/**
 * A worker's token totals, saying how many model requests reported no
 * usage: without that, a provider that never sends usage read as "0 in,
 * 0 out", as if measured (Usage.unreported_requests).
 */
export function usageText(usage: Usage | undefined): string {
  if (!usage) return "";
  const tokens = `${usage.inputTokens} in, ${usage.outputTokens} out`;
  if (usage.unreportedRequests === 0n) return tokens;
  return `${tokens} (${usage.unreportedRequests} of ${usage.modelRequests} model requests reported no usage)`;
}
