import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import type { PutConfigBundleRequest } from "../../gen/worker_runtime/v1/runtime_management_pb.js";
import type { CreateWorkerRequest, ListWorkersRequest } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { WorkerStatusSchema } from "../../gen/worker_runtime/v1/worker_pb.js";
import {
  checkBundleCounts,
  checkCreateWorkerCounts,
  checkEnumList,
  checkId,
  checkLabels,
  DEFAULT_LIMITS,
  RuntimeError,
} from "../runtime/index.js";
import { backendError } from "./backend-errors.js";

/**
 * The request fields a Backend acts on before any Runtime sees them — the
 * runtime id it routes by, the ListWorkers filters it fans out — checked by
 * the Runtime's own rules and answered with the Runtime's own typed errors,
 * so a client sees the same refusal through a Backend as direct. Without
 * this a malformed id was NOT_FOUND (echoing it), and a bad filter came
 * back as a page with every Runtime "failed". The lists of the calls it
 * relays are counted too (request-bounds.ts): relaying re-encodes a
 * request, which for one repeating a short entry hundreds of thousands of
 * times held the Backend's event loop for seconds.
 */

/** A runtime id the Backend routes by: required, and of the Runtime's id shape (INVALID_ARGUMENT naming `field`). */
export function checkRoutedRuntimeId(field: string, runtimeId: string): string {
  return asConnect(() => checkId(field, runtimeId));
}

/**
 * A ListWorkers' filters, routed to one runtime or fanned out across all:
 * known statuses, and a label selector of well-formed keys within
 * {@link ROUTED_LIST_CEILING} (its values bounded only by the message).
 * Each runtime's own label limits, which an operator may raise, are its to
 * apply, as for CreateWorker; across runtimes, the first that refuses the
 * selector by its limits answers the call with that refusal, as it would
 * direct (fanout-list.ts). A fan-out used to count the selector against
 * the default 32 labels, refusing in a runtime's words what runtimes with
 * raised limits all accept.
 */
export function checkListFilters(request: ListWorkersRequest): void {
  asConnect(() => {
    checkEnumList("statuses", request.statuses, WorkerStatusSchema);
    atCeiling(() => checkLabels("label_selector", request.labelSelector, ROUTED_LIST_CEILING, DEFAULT_LIMITS.maxMessageBytes));
  });
}

/**
 * Most mounts, and most labels, a CreateWorker the Backend relays may
 * carry: far above any runtime's sensible limits (defaults 8 and 32), far
 * below the hundreds of thousands whose re-encoding held the event loop.
 */
export const ROUTED_LIST_CEILING = 1_024;

/**
 * A routed CreateWorker's lists, by the ceilings every runtime shares: the
 * capabilities' fixed bound, and {@link ROUTED_LIST_CEILING} for mounts and
 * labels. Not by the default limits: an operator may raise a runtime's
 * maxMounts and maxLabels, and that runtime must be usable up to them
 * through a Backend; each runtime refuses past its own limits with its own
 * LIMIT_EXCEEDED, relayed unchanged.
 */
export function checkCreateWorkerLists(request: CreateWorkerRequest): void {
  asConnect(() => atCeiling(() => checkCreateWorkerCounts(request, { maxMounts: ROUTED_LIST_CEILING, maxLabels: ROUTED_LIST_CEILING })));
}

/**
 * Runs a count against {@link ROUTED_LIST_CEILING}, its refusal saying the
 * bound is the Backend's: a runtime's own limits may be above it (its
 * GetRuntime says so), and the same words a runtime uses ("at most 1024",
 * limit "1024") left its client with a bound the runtime does not have and
 * no word of why. The field and `limit` metadata stay as a runtime's.
 */
function atCeiling(check: () => void): void {
  try {
    check();
  } catch (error) {
    const atTheCeiling =
      error instanceof RuntimeError &&
      error.reason === ErrorReason.LIMIT_EXCEEDED &&
      error.metadata["limit"] === String(ROUTED_LIST_CEILING);
    if (!atTheCeiling) throw error;
    throw new RuntimeError(
      error.code,
      error.reason,
      `${error.message} through a Backend (the Backend's own ceiling, whatever a runtime's limits; call the runtime directly for more)`,
      error.metadata,
    );
  }
}

/** A routed PutConfigBundle's lists: the bundle's profiles and every list in it. */
export function checkBundleLists(request: PutConfigBundleRequest): void {
  const { bundle } = request;
  if (bundle) asConnect(() => checkBundleCounts(bundle));
}

/** Runs a Runtime check, turning its RuntimeError into the ConnectError a Backend handler throws. */
function asConnect<T>(check: () => T): T {
  try {
    return check();
  } catch (error) {
    if (!(error instanceof RuntimeError)) throw error;
    throw backendError(error.code, error.reason, error.message, error.metadata);
  }
}
