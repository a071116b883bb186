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
 * Why watches end when an event of their stream could not be written: the
 * event is rolled back, so nothing else would ever tell them. A worker's
 * (and StreamInput) waited for ever on a run whose end was lost; the
 * runtime's (WatchRuntime) kept showing a stale worker. Resuming from the
 * last cursor gets what was lost once the store writes again: the worker
 * writes and announces what it owes (owed-changes.ts), the runtime publishes
 * the latest state of each worker whose event was lost (runtime-event-feed.ts).
 */
export function eventsNotPersisted(whose: { worker_id: string } | { runtime_id: string }, cause: unknown): RuntimeError {
  const subject = "worker_id" in whose ? "worker's" : "runtime's";
  return new RuntimeError(
    Code.Unavailable,
    ErrorReason.STORE_UNAVAILABLE,
    `the ${subject} events could not be persisted; resume from the last cursor once the store writes again`,
    whose,
    { cause },
  );
}
