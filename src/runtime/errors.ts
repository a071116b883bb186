import { Code } from "@connectrpc/connect";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";

/**
 * The one error type the core throws for anything a caller can act on. It
 * carries the wire code and our typed reason; the server converts it to a
 * ConnectError with an ErrorDetail in exactly one place. Messages are safe to
 * show to clients: never credentials or host paths.
 */
export class RuntimeError extends Error {
  override readonly name: string = "RuntimeError";

  constructor(
    readonly code: Code,
    readonly reason: ErrorReason,
    message: string,
    readonly metadata: Record<string, string> = {},
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A request field is missing, malformed or out of range. */
export function invalidArgument(field: string, message: string): RuntimeError {
  return new RuntimeError(Code.InvalidArgument, ErrorReason.INVALID_ARGUMENT, `${field}: ${message}`, { field });
}

/** A size or count bound was exceeded by the request. */
export function limitExceeded(field: string, limit: number, message: string): RuntimeError {
  return new RuntimeError(Code.InvalidArgument, ErrorReason.LIMIT_EXCEEDED, `${field}: ${message}`, {
    field,
    limit: String(limit),
  });
}

/** A named resource does not exist. */
export function notFound(what: string, id: string): RuntimeError {
  return new RuntimeError(Code.NotFound, ErrorReason.NOT_FOUND, `${what} "${id}" not found`, { [what]: id });
}

/**
 * The worker was deleted while a stream of it was open: the end of its
 * watches and StreamInputs. The same code, reason and metadata as a new
 * request's {@link notFound} for it, so clients handle both alike; the
 * message says it was there and is gone, rather than a lost connection.
 */
export function workerDeleted(workerId: string): RuntimeError {
  return new RuntimeError(Code.NotFound, ErrorReason.NOT_FOUND, `worker ${workerId} was deleted`, { worker_id: workerId });
}

/**
 * A worker's delete failed after it had stopped the worker (its store could
 * not delete it): what a stream that saw its run end by the delete is told
 * instead of {@link workerDeleted}, since the worker still exists. The
 * failure's own code and reason (UNAVAILABLE + STORE_UNAVAILABLE for a
 * failing store), so clients retry or resume as after any such failure.
 */
export function workerNotDeleted(workerId: string, failure: unknown): RuntimeError {
  const typed = failure instanceof RuntimeError ? failure : undefined;
  return new RuntimeError(
    typed?.code ?? Code.Internal,
    typed?.reason ?? ErrorReason.INTERNAL,
    `worker ${workerId} was not deleted: ${typed?.message ?? "internal error"}`,
    { ...typed?.metadata, worker_id: workerId },
    { cause: failure },
  );
}

/** A request_id was used before with other content (the retry is not the same request). */
export function idempotencyConflict(requestId: string, used: string, metadata: Record<string, string>): RuntimeError {
  return new RuntimeError(Code.AlreadyExists, ErrorReason.IDEMPOTENCY_CONFLICT, `request_id "${requestId}" was already used ${used}`, {
    request_id: requestId,
    ...metadata,
  });
}

/** Converts an AbortSignal's abort into a rejection the caller can recognise. */
export function abortError(): Error {
  return new DOMException("The operation was aborted", "AbortError");
}

/** Whether an error is the AbortError of a cancelled await. */
export function isAbortError(error: unknown): boolean {
  return error instanceof Error && error.name === "AbortError";
}
