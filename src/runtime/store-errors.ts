import { Code } from "@connectrpc/connect";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { RuntimeError } from "./errors.js";
import { StoreDataError, StoreSequenceError, StoreWriteError } from "./store.js";

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
