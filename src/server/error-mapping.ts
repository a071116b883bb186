import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorDetailSchema, ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { RuntimeError } from "../runtime/index.js";
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
    return new ConnectError(error.rawMessage, error.code, error.metadata, [
      { desc: ErrorDetailSchema, value: { reason: reasonForCode(error.code), metadata: sizeLimitOf(error) } },
    ]);
  }
  logger.error("internal error", { cause: error instanceof Error ? (error.stack ?? error.message) : String(error) });
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

/**
 * connect-es reports a message over readMaxBytes / writeMaxBytes as
 * RESOURCE_EXHAUSTED naming the limit only in its text; errors.proto
 * promises it in metadata "limit".
 */
function sizeLimitOf(error: ConnectError): Record<string, string> {
  if (error.code !== Code.ResourceExhausted) return {};
  const limit = /configured (?:read|write)MaxBytes (\d+)/.exec(error.rawMessage)?.[1];
  return limit !== undefined ? { limit } : {};
}

/** The reason for protocol-level errors that did not come from the runtime. */
function reasonForCode(code: Code): ErrorReason {
  switch (code) {
    case Code.InvalidArgument:
      return ErrorReason.INVALID_ARGUMENT;
    case Code.ResourceExhausted:
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
