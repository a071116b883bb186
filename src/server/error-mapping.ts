import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorDetailSchema, ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { errorLogFields, RuntimeError } from "../runtime/index.js";
import type { Logger } from "../runtime/index.js";

/**
 * The one place where errors become wire errors. A RuntimeError keeps its
 * code and gains our typed ErrorDetail; a ConnectError (e.g. from the
 * protocol layer) gets a detail if it lacks one; anything else is an
 * internal error whose text goes to the log, never to the client.
 */
export function toConnectError(error: unknown, logger: Logger): ConnectError {
  if (error instanceof RuntimeError) {
    return new ConnectError(error.message, error.code, undefined, [
      { desc: ErrorDetailSchema, value: { reason: error.reason, metadata: error.metadata } },
    ]);
  }
  if (error instanceof ConnectError) {
    if (error.findDetails(ErrorDetailSchema).length > 0) return error;
    if (isUndecodableBody(error)) {
      return new ConnectError(error.rawMessage, Code.InvalidArgument, error.metadata, [
        { desc: ErrorDetailSchema, value: { reason: ErrorReason.INVALID_ARGUMENT, metadata: {} } },
      ]);
    }
    const overMaxTimeout = error.code === Code.InvalidArgument ? MAX_TIMEOUT.exec(error.rawMessage)?.[1] : undefined;
    if (overMaxTimeout !== undefined) {
      // A deadline over the server's maxTimeoutMs is a bound the request exceeded, like a message over its size.
      return new ConnectError(error.rawMessage, error.code, error.metadata, [
        { desc: ErrorDetailSchema, value: { reason: ErrorReason.LIMIT_EXCEEDED, metadata: { limit: overMaxTimeout } } },
      ]);
    }
    return new ConnectError(error.rawMessage, error.code, error.metadata, [
      { desc: ErrorDetailSchema, value: { reason: reasonForCode(error.code), metadata: metadataFor(error) } },
    ]);
  }
  if (isClientGone(error)) {
    // Routine: the client hung up (e.g. a reflection stream cut while reading requests).
    logger.debug?.("client went away", errorLogFields(error));
    return new ConnectError("client went away", Code.Canceled, undefined, [
      { desc: ErrorDetailSchema, value: { reason: ErrorReason.INTERNAL, metadata: {} } },
    ]);
  }
  logger.error("internal error", errorLogFields(error));
  return new ConnectError("internal error", Code.Internal, undefined, [
    { desc: ErrorDetailSchema, value: { reason: ErrorReason.INTERNAL, metadata: {} } },
  ]);
}

/**
 * connect-es reports a request body it cannot decode as INTERNAL, like
 * grpc-go: bytes that are not valid protobuf ("parse binary: ...") and a
 * message flagged compressed without a negotiated encoding. The caller sent
 * them, so they are INVALID_ARGUMENT here, as an undecodable JSON body is.
 */
const UNDECODABLE_BODY_MESSAGES = ["parse binary:", "received compressed envelope, but do not know how to decompress"];

function isUndecodableBody(error: ConnectError): boolean {
  return error.code === Code.Internal && UNDECODABLE_BODY_MESSAGES.some((prefix) => error.rawMessage.startsWith(prefix));
}

/** The reason for protocol-level errors that did not come from the runtime. */
function reasonForCode(code: Code): ErrorReason {
  switch (code) {
    case Code.InvalidArgument:
      return ErrorReason.INVALID_ARGUMENT;
    case Code.ResourceExhausted:
    // The client's own deadline is a limit too; errors.proto has no reason of its own for it.
    case Code.DeadlineExceeded:
      return ErrorReason.LIMIT_EXCEEDED;
    case Code.Unauthenticated:
      return ErrorReason.UNAUTHENTICATED;
    case Code.NotFound:
      return ErrorReason.NOT_FOUND;
    case Code.Unimplemented:
      return ErrorReason.UNSUPPORTED;
    default:
      return ErrorReason.INTERNAL;
  }
}

/** connect-es's message for a grpc-timeout / connect-timeout-ms over maxTimeoutMs (the bound in ms). */
const MAX_TIMEOUT = /^timeout \d+ms must be <= (\d+)$/;

/** connect-es's message for a message over readMaxBytes / writeMaxBytes. */
const MESSAGE_SIZE = /larger than configured (?:read|write)MaxBytes (\d+)/;

/** The metadata LIMIT_EXCEEDED promises ("limit"), for protocol-level errors. */
function metadataFor(error: ConnectError): Record<string, string> {
  if (error.code === Code.DeadlineExceeded) return { limit: "deadline" };
  const size = MESSAGE_SIZE.exec(error.rawMessage)?.[1];
  if (error.code === Code.ResourceExhausted && size !== undefined) return { limit: size };
  return {};
}

/** Node error codes that mean the client hung up, not that the server failed. */
const CLIENT_GONE_CODES = new Set([
  "ERR_STREAM_PREMATURE_CLOSE",
  "ERR_STREAM_DESTROYED",
  "ERR_STREAM_WRITE_AFTER_END",
  "ERR_HTTP2_INVALID_STREAM",
  "ERR_HTTP2_STREAM_ERROR",
  "ERR_HTTP2_STREAM_CANCEL",
  "ECONNRESET",
  "EPIPE",
]);

/**
 * Whether an error is a routine client disconnect (an aborted stream, a
 * socket closed mid-request): logged at debug, never as a server failure.
 */
export function isClientGone(error: unknown): boolean {
  if (error instanceof ConnectError && (error.code === Code.Aborted || error.code === Code.Canceled)) return true;
  for (let cause: unknown = error, depth = 0; cause instanceof Error && depth < 8; cause = cause.cause, depth++) {
    const nodeCode = (cause as NodeJS.ErrnoException).code;
    if (nodeCode !== undefined && CLIENT_GONE_CODES.has(nodeCode)) return true;
  }
  return false;
}
