import { create } from "@bufbuild/protobuf";
import { type Code, ConnectError } from "@connectrpc/connect";
import { ErrorDetailSchema, type ErrorReason } from "../../../gen/worker_runtime/v1/errors_pb.js";

/**
 * An error the client finds itself, built as the server builds its own: a
 * code plus our ErrorDetail. It then prints with a reason, as JSON with
 * that reason, and exits by the same table as every server error.
 */
export function typedError(code: Code, reason: ErrorReason, message: string, metadata: Record<string, string> = {}): ConnectError {
  const detail = create(ErrorDetailSchema, { reason, metadata });
  return new ConnectError(message, code, undefined, [{ desc: ErrorDetailSchema, value: detail }]);
}
