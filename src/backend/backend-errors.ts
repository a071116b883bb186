import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorDetailSchema, ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";

/** A request field the Backend itself refuses (metadata "field"), like the Runtime's own check. */
export function invalidField(field: string, message: string): ConnectError {
  return new ConnectError(`${field} ${message}`, Code.InvalidArgument, undefined, [
    { desc: ErrorDetailSchema, value: { reason: ErrorReason.INVALID_ARGUMENT, metadata: { field } } },
  ]);
}

/**
 * A page token the Backend cannot continue from (not one it issued, or
 * issued for other filters): INVALID_ARGUMENT + PAGE_TOKEN_INVALID, as a
 * runtime refuses its own, so a client knows to list again from the start.
 */
export function invalidPageToken(why: string): ConnectError {
  return backendError(Code.InvalidArgument, ErrorReason.PAGE_TOKEN_INVALID, `page_token: ${why}; list again without a page token`, {
    field: "page_token",
  });
}

/** A typed error with no runtime in it. */
export function backendError(code: Code, reason: ErrorReason, message: string, metadata: Record<string, string> = {}): ConnectError {
  return new ConnectError(message, code, undefined, [{ desc: ErrorDetailSchema, value: { reason, metadata } }]);
}

/** A field over its size bound: LIMIT_EXCEEDED with "field" and "limit", as a Runtime answers one. */
export function fieldTooLarge(field: string, limit: number, bytes: number): ConnectError {
  return backendError(Code.InvalidArgument, ErrorReason.LIMIT_EXCEEDED, `${field}: is ${bytes} bytes; at most ${limit} allowed`, {
    field,
    limit: String(limit),
  });
}
