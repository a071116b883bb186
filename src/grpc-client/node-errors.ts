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
  const code = RESET_CODES.get(rstCode);
  if (code === undefined) return undefined;
  const name = RESET_NAMES.get(rstCode) ?? String(rstCode);
  return new ConnectError(`http/2 stream closed with error code ${name} (0x${rstCode.toString(16)})`, code);
}

const h2 = constants;
const RESET_CODES = new Map<number, Code>([
  [h2.NGHTTP2_PROTOCOL_ERROR, Code.Internal],
  [h2.NGHTTP2_INTERNAL_ERROR, Code.Internal],
  [h2.NGHTTP2_FLOW_CONTROL_ERROR, Code.Internal],
  [h2.NGHTTP2_SETTINGS_TIMEOUT, Code.Internal],
  [h2.NGHTTP2_FRAME_SIZE_ERROR, Code.Internal],
  [h2.NGHTTP2_COMPRESSION_ERROR, Code.Internal],
  [h2.NGHTTP2_CONNECT_ERROR, Code.Internal],
  [h2.NGHTTP2_REFUSED_STREAM, Code.Unavailable],
  [h2.NGHTTP2_CANCEL, Code.Canceled],
  [h2.NGHTTP2_ENHANCE_YOUR_CALM, Code.ResourceExhausted],
  [h2.NGHTTP2_INADEQUATE_SECURITY, Code.PermissionDenied],
  [h2.NGHTTP2_HTTP_1_1_REQUIRED, Code.PermissionDenied],
]);
const RESET_NAMES = new Map<number, string>([
  [h2.NGHTTP2_PROTOCOL_ERROR, "PROTOCOL_ERROR"],
  [h2.NGHTTP2_INTERNAL_ERROR, "INTERNAL_ERROR"],
  [h2.NGHTTP2_FLOW_CONTROL_ERROR, "FLOW_CONTROL_ERROR"],
  [h2.NGHTTP2_SETTINGS_TIMEOUT, "SETTINGS_TIMEOUT"],
  [h2.NGHTTP2_FRAME_SIZE_ERROR, "FRAME_SIZE_ERROR"],
  [h2.NGHTTP2_COMPRESSION_ERROR, "COMPRESSION_ERROR"],
  [h2.NGHTTP2_CONNECT_ERROR, "CONNECT_ERROR"],
  [h2.NGHTTP2_REFUSED_STREAM, "REFUSED_STREAM"],
  [h2.NGHTTP2_CANCEL, "CANCEL"],
  [h2.NGHTTP2_ENHANCE_YOUR_CALM, "ENHANCE_YOUR_CALM"],
  [h2.NGHTTP2_INADEQUATE_SECURITY, "INADEQUATE_SECURITY"],
  [h2.NGHTTP2_HTTP_1_1_REQUIRED, "HTTP_1_1_REQUIRED"],
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
