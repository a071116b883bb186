import { Code } from "@connectrpc/connect";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { DiagnosticSeverity } from "../../gen/worker_runtime/v1/runtime_pb.js";
import { bounded } from "./error-log-fields.js";
import { RuntimeError } from "./errors.js";
import type { Logger } from "./logger.js";
import { type StoreDiagnostic, StoreDataError, StoreSequenceError, StoreWriteError } from "./store.js";

/**
 * What the users of a quarantined worker are told (`Worker.failure_message`,
 * and so the WORKER_FAILED refusal): in plain words, with no file in it. API
 * clients and, through the Backend, browsers read it, and the data dir's
 * layout is no business of theirs; the operator's log and ListDiagnostics
 * say which file is damaged and how.
 */
export const DAMAGED_WORKER_MESSAGE =
  "the worker's stored state is damaged and cannot be read; it is kept for inspection (restore it from a backup, or delete the worker)";

/**
 * Converts a store failure into the typed error a caller can act on:
 * damaged data is DATA_LOSS, a store that cannot write is UNAVAILABLE
 * (retry later). Anything else passes through unchanged. The store's error
 * is kept as `cause`, never in the client-visible message.
 */
export function storeError(error: unknown): unknown {
  if (error instanceof StoreDataError) {
    return new RuntimeError(
      Code.DataLoss,
      ErrorReason.WORKER_FAILED,
      "the worker's stored history is damaged; see ListDiagnostics",
      {},
      { cause: error },
    );
  }
  if (isStoreWriteFailure(error)) {
    return new RuntimeError(
      Code.Unavailable,
      ErrorReason.STORE_UNAVAILABLE,
      "the runtime could not persist the request; retry later",
      {},
      { cause: error },
    );
  }
  return error;
}

/** Awaits a store operation, converting its failure with {@link storeError}. */
export async function typedStoreErrors<T>(operation: Promise<T>): Promise<T> {
  try {
    return await operation;
  } catch (error) {
    throw storeError(error);
  }
}

/** Whether the store refused a write (I/O failure, or a write after an earlier failed one). */
export function isStoreWriteFailure(error: unknown): boolean {
  return error instanceof StoreWriteError || error instanceof StoreSequenceError;
}

/**
 * Logs what a store found at open at the finding's level, for the operator:
 * with the absolute files and errors (`hostDetail`) where the diagnostic
 * clients can list names files relative to the data dir. Under `damage`,
 * not `detail`: the text is the store's own (files, checksums), not a
 * payload, so the CLI's logger does not redact it.
 */
export function logStoreDiagnostic(logger: Logger, diagnostic: StoreDiagnostic): void {
  const fields = { code: diagnostic.code, worker_id: diagnostic.workerId, damage: bounded(diagnostic.hostDetail ?? diagnostic.message) };
  if (diagnostic.severity === DiagnosticSeverity.ERROR) logger.error("store damage found at open", fields);
  else if (diagnostic.severity === DiagnosticSeverity.WARNING) logger.warn("store problem found at open", fields);
  else logger.info("store finding at open", fields);
}

/**
 * Why a worker's watches (and StreamInput) end when one of its durable
 * events could not be written: the event is rolled back, so nothing else
 * would ever tell them (they waited for ever on a run whose end was lost).
 * Resuming from the last cursor gets it once the store writes again, when
 * the worker writes and announces what it owes (see owed-changes.ts).
 */
export function eventsNotPersisted(workerId: string, cause: unknown): RuntimeError {
  return new RuntimeError(
    Code.Unavailable,
    ErrorReason.STORE_UNAVAILABLE,
    `the worker's events could not be persisted; resume from the last cursor once the store writes again`,
    { worker_id: workerId },
    { cause },
  );
}

/**
 * Why the runtime's watches (WatchRuntime) end when one of its events could
 * not be written: the event is rolled back, so they would keep showing a
 * stale worker. Resuming from the last cursor gets the latest state of each
 * worker whose event was lost, once the store writes again (see
 * runtime-event-feed.ts).
 */
export function runtimeEventsNotPersisted(runtimeId: string, cause: unknown): RuntimeError {
  return new RuntimeError(
    Code.Unavailable,
    ErrorReason.STORE_UNAVAILABLE,
    `the runtime's events could not be persisted; resume from the last cursor once the store writes again`,
    { runtime_id: runtimeId },
    { cause },
  );
}
