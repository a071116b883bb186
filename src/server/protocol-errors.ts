import { Code, ConnectError } from "@connectrpc/connect";
import { readAllBytes, type UniversalHandlerFn, type UniversalServerResponse } from "@connectrpc/connect/protocol";
import { codeToHttpStatus, errorFromJsonBytes, errorToJsonBytes } from "@connectrpc/connect/protocol-connect";
import { findTrailerError, setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import type { Logger } from "../runtime/index.js";
import { toConnectError } from "./error-mapping.js";

/**
 * Errors the protocol layer raises before a request reaches any handler
 * (an undecodable body, a message over the size limit, a bad timeout) do not
 * pass through interceptors, so they would leave without our ErrorDetail,
 * and connect-es reports an undecodable binary body as INTERNAL (HTTP 500
 * over Connect) although the caller sent it. This wrapper sends them through
 * the one error mapping, where they get the detail and the right code.
 *
 * It rewrites only what is cheap to rewrite: the error body of a unary
 * Connect response (non-200, so never on the success path) and the gRPC
 * trailers (checked once when the body ends). gRPC-Web and Connect
 * streaming end-of-stream errors carry their status inside the body; those
 * from the protocol layer keep connect-es's form.
 */
export function withTypedProtocolErrors(handler: UniversalHandlerFn, logger: Logger): UniversalHandlerFn {
  return async (request) => {
    const response = await handler(request);
    const contentType = request.header.get("content-type") ?? "";
    if (contentType.startsWith("application/grpc-web")) return response;
    if (contentType.startsWith("application/grpc")) return withTypedGrpcTrailer(response, logger);
    if (response.status !== 200 && /^application\/(proto|json)/.test(contentType)) {
      return withTypedConnectErrorBody(response, logger);
    }
    return response;
  };
}

/** Re-maps a gRPC error status once the body (and so the trailer) is complete. */
function withTypedGrpcTrailer(response: UniversalServerResponse, logger: Logger): UniversalServerResponse {
  const { body, trailer } = response;
  if (!body || !trailer) return response;
  async function* typedBody(): AsyncIterable<Uint8Array> {
    try {
      yield* body ?? [];
    } finally {
      const error = findTrailerError(trailer ?? new Headers());
      if (error && error.details.length === 0) setTrailerStatus(trailer ?? new Headers(), remap(error, logger));
    }
  }
  return { ...response, body: typedBody() };
}

/** Re-maps a unary Connect error body (uncompressed; error bodies are small). */
async function withTypedConnectErrorBody(response: UniversalServerResponse, logger: Logger): Promise<UniversalServerResponse> {
  const header = response.header;
  if (!response.body || !header || header.has("content-encoding")) return response;
  const bytes = await readAllBytes(response.body, Number.MAX_SAFE_INTEGER);
  let error: ConnectError;
  try {
    error = errorFromJsonBytes(bytes, undefined, new ConnectError("", Code.Unknown));
  } catch {
    return { ...response, body: oneChunk(bytes) };
  }
  if (error.details.length > 0) return { ...response, body: oneChunk(bytes) };
  const typed = remap(error, logger);
  const typedBytes = errorToJsonBytes(typed, undefined);
  header.set("content-length", String(typedBytes.byteLength));
  return { ...response, status: codeToHttpStatus(typed.code), header, body: oneChunk(typedBytes) };
}

/** The protocol error, without the response metadata it was read from, through the one mapping. */
function remap(error: ConnectError, logger: Logger): ConnectError {
  return toConnectError(new ConnectError(error.rawMessage, error.code), logger);
}

async function* oneChunk(bytes: Uint8Array): AsyncIterable<Uint8Array> {
  yield bytes;
}
