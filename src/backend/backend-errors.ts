import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorDetailSchema, ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";

/** A request field the Backend itself refuses (metadata "field"), like the Runtime's own check. */
export function invalidField(field: string, message: string): ConnectError {
  return new ConnectError(`${field} ${message}`, Code.InvalidArgument, undefined, [
    { desc: ErrorDetailSchema, value: { reason: ErrorReason.INVALID_ARGUMENT, metadata: { field } } },
  ]);
}

/** A typed error with no runtime in it. */
export function backendError(code: Code, reason: ErrorReason, message: string, metadata: Record<string, string> = {}): ConnectError {
  return new ConnectError(message, code, undefined, [{ desc: ErrorDetailSchema, value: { reason, metadata } }]);
}
