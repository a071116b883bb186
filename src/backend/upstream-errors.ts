import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorDetailSchema, ErrorReason, type ErrorDetail } from "../../gen/worker_runtime/v1/errors_pb.js";
import { RuntimeHealth } from "../../gen/worker_runtime/v1/backend_pb.js";
import { bounded, type Logger } from "../runtime/index.js";

/**
 * The one place where an error from a Runtime becomes the error a Backend
 * client sees. A Runtime's own typed rejection (WORKER_BUSY, NOT_FOUND,
 * CURSOR_EXPIRED, ...) keeps its code, reason, metadata and message: the
 * Runtime writes those for clients, and every client must see the same
 * rejections through a Backend as direct. Everything else — a refused or
 * cut connection, a deadline, TLS, the Runtime refusing the Backend's
 * token, an internal error — becomes a RUNTIME_* reason with a message that
 * names only the runtime id; the upstream text (which may name hosts or
 * paths) goes to the log. Response headers and trailers are never copied.
 */
export function fromUpstream(error: unknown, runtimeId: string, logger: Logger, signal?: AbortSignal): ConnectError {
  const upstream = ConnectError.from(error);
  if (signal?.aborted) return new ConnectError("the call was cancelled", Code.Canceled);
  const detail = upstream.findDetails(ErrorDetailSchema)[0];
  if (detail && isRelayable(detail)) {
    return new ConnectError(upstream.rawMessage, upstream.code, undefined, [
      { desc: ErrorDetailSchema, value: { reason: detail.reason, metadata: detail.metadata } },
    ]);
  }
  const health = healthAfter(upstream);
  logger.warn("runtime call failed", { runtime_id: runtimeId, code: Code[upstream.code], cause: bounded(upstream.message) });
  if (upstream.code === Code.Internal && detail) {
    return typed(Code.Internal, ErrorReason.INTERNAL, `internal error in runtime ${runtimeId}`, runtimeId);
  }
  switch (health) {
    case RuntimeHealth.UNAUTHENTICATED:
      return typed(
        Code.Unavailable,
        ErrorReason.RUNTIME_UNAUTHENTICATED,
        `runtime ${runtimeId} refused the backend's credentials`,
        runtimeId,
      );
    case RuntimeHealth.INCOMPATIBLE:
      return typed(Code.Unavailable, ErrorReason.RUNTIME_INCOMPATIBLE, `runtime ${runtimeId} is incompatible with this backend`, runtimeId);
    default:
      if (upstream.code === Code.DeadlineExceeded) {
        return typed(Code.DeadlineExceeded, ErrorReason.RUNTIME_UNAVAILABLE, `runtime ${runtimeId} did not answer in time`, runtimeId);
      }
      return typed(Code.Unavailable, ErrorReason.RUNTIME_UNAVAILABLE, `runtime ${runtimeId} is unavailable`, runtimeId);
  }
}

/** A typed Backend error about one Runtime. */
export function typed(code: Code, reason: ErrorReason, message: string, runtimeId: string): ConnectError {
  return new ConnectError(message, code, undefined, [{ desc: ErrorDetailSchema, value: { reason, metadata: { runtime_id: runtimeId } } }]);
}

/**
 * A call relayed to a Runtime was cut because this Backend is shutting down
 * (it closes its connections after its drain). The Runtime is fine and what
 * the call started (a run) goes on there: RUNTIME_DRAINING tells the client
 * to try again later or through another Backend, as a draining Runtime does.
 */
export function backendShuttingDown(runtimeId: string): ConnectError {
  return typed(
    Code.Unavailable,
    ErrorReason.RUNTIME_DRAINING,
    `the backend is shutting down; runtime ${runtimeId} was not affected (what the call started goes on there)`,
    runtimeId,
  );
}

/** The runtime was removed from this Backend while a call or watch used it. */
export function runtimeRemoved(runtimeId: string): ConnectError {
  return typed(Code.NotFound, ErrorReason.NOT_FOUND, `runtime ${runtimeId} was removed from this backend`, runtimeId);
}

/** Most registered runtime ids the NOT_FOUND of an unknown one names. */
export const NAMED_RUNTIMES_MAX = 20;

/**
 * The runtime is not registered with this Backend. The message names the
 * ones that are (in `registered`'s order, at most {@link NAMED_RUNTIMES_MAX},
 * then how many more), so a user who mistyped --runtime sees what to type;
 * ListRuntimes shows the same ids to any client, so nothing private goes out.
 */
export function unknownRuntime(runtimeId: string, registered: readonly string[]): ConnectError {
  const id = runtimeId.slice(0, 64);
  const named = registered.slice(0, NAMED_RUNTIMES_MAX).join(", ");
  const more = registered.length > NAMED_RUNTIMES_MAX ? ` and ${registered.length - NAMED_RUNTIMES_MAX} more` : "";
  const has = registered.length === 0 ? "it has none" : `it has ${named}${more}`;
  return typed(Code.NotFound, ErrorReason.NOT_FOUND, `runtime "${id}" is not registered with this backend; ${has}`, id);
}

/**
 * What an upstream failure says about the Runtime's health: the Runtime
 * refused our token, lacks a service, or could not be reached. A typed
 * rejection of the request itself says nothing (undefined).
 */
export function healthAfter(error: ConnectError): RuntimeHealth | undefined {
  const detail = error.findDetails(ErrorDetailSchema)[0];
  if (error.code === Code.Unauthenticated) return RuntimeHealth.UNAUTHENTICATED;
  if (detail) return detail.reason === ErrorReason.RUNTIME_DRAINING ? RuntimeHealth.UNAVAILABLE : undefined;
  if (error.code === Code.Unimplemented) return RuntimeHealth.INCOMPATIBLE;
  if (error.code === Code.Canceled) return undefined;
  return RuntimeHealth.UNAVAILABLE;
}

/** Typed rejections a client may see verbatim; auth and internal errors are the Backend's business. */
function isRelayable(detail: ErrorDetail): boolean {
  return (
    detail.reason !== ErrorReason.UNAUTHENTICATED && detail.reason !== ErrorReason.INTERNAL && detail.reason !== ErrorReason.UNSPECIFIED
  );
}
