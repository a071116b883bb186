import { Code, ConnectError } from "@connectrpc/connect";
import { constants } from "node:http2";

/**
 * How connect-node turns a Node error on an HTTP/2 call into a ConnectError
 * (its `connectErrorFromNodeReason`, which it does not export): the same
 * codes for the same failures, so a caller sees the fast path's errors as
 * it sees connect's.
 */
export function connectErrorFromNodeReason(reason: unknown): ConnectError {
  const codes = nodeErrorCodes(reason);
  let code = Code.Internal;
  if (codes.includes("ERR_STREAM_WRITE_AFTER_END")) code = Code.Aborted;
  else if (codes.some((c) => c === "ERR_STREAM_DESTROYED" || c === "ERR_HTTP2_INVALID_STREAM" || c === "ECONNRESET")) code = Code.Aborted;
  else if (codes.some((c) => c === "ETIMEDOUT" || c === "ENOTFOUND" || c === "EAI_AGAIN" || c === "ECONNREFUSED")) code = Code.Unavailable;
  const error = ConnectError.from(reason, code);
  if (error !== reason) error.cause = reason;
  return error;
}

/** Whether a Node error (or one in its `cause` chain) has this `code`. */
export function hasNodeErrorCode(reason: unknown, code: string): boolean {
  return nodeErrorCodes(reason).includes(code);
}

/**
 * The error an HTTP/2 stream reset by the peer means (connect-node's
 * `connectErrorFromH2ResetCode`); undefined for NO_ERROR and STREAM_CLOSED.
 */
export function connectErrorFromResetCode(rstCode: number): ConnectError | undefined {
  const reset = RESETS.get(rstCode);
  if (reset === undefined) return undefined;
  return new ConnectError(`http/2 stream closed with error code ${reset.name} (0x${rstCode.toString(16)})`, reset.code);
}

const h2 = constants;
/** The reset codes that are errors: the status each means and its name in the message. */
const RESETS = new Map<number, { code: Code; name: string }>([
  [h2.NGHTTP2_PROTOCOL_ERROR, { code: Code.Internal, name: "PROTOCOL_ERROR" }],
  [h2.NGHTTP2_INTERNAL_ERROR, { code: Code.Internal, name: "INTERNAL_ERROR" }],
  [h2.NGHTTP2_FLOW_CONTROL_ERROR, { code: Code.Internal, name: "FLOW_CONTROL_ERROR" }],
  [h2.NGHTTP2_SETTINGS_TIMEOUT, { code: Code.Internal, name: "SETTINGS_TIMEOUT" }],
  [h2.NGHTTP2_FRAME_SIZE_ERROR, { code: Code.Internal, name: "FRAME_SIZE_ERROR" }],
  [h2.NGHTTP2_COMPRESSION_ERROR, { code: Code.Internal, name: "COMPRESSION_ERROR" }],
  [h2.NGHTTP2_CONNECT_ERROR, { code: Code.Internal, name: "CONNECT_ERROR" }],
  [h2.NGHTTP2_REFUSED_STREAM, { code: Code.Unavailable, name: "REFUSED_STREAM" }],
  [h2.NGHTTP2_CANCEL, { code: Code.Canceled, name: "CANCEL" }],
  [h2.NGHTTP2_ENHANCE_YOUR_CALM, { code: Code.ResourceExhausted, name: "ENHANCE_YOUR_CALM" }],
  [h2.NGHTTP2_INADEQUATE_SECURITY, { code: Code.PermissionDenied, name: "INADEQUATE_SECURITY" }],
  [h2.NGHTTP2_HTTP_1_1_REQUIRED, { code: Code.PermissionDenied, name: "HTTP_1_1_REQUIRED" }],
]);

/** The `code` of an error and of every error in its `cause` chain. */
function nodeErrorCodes(reason: unknown): string[] {
  const codes: string[] = [];
  const seen = new Set<unknown>();
  let current = reason;
  while (current instanceof Error && !seen.has(current)) {
    seen.add(current);
    const code = (current as { code?: unknown }).code;
    if (typeof code === "string") codes.push(code);
    current = current.cause;
  }
  return codes;
}
