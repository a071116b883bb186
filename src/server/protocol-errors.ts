import { Code, ConnectError } from "@connectrpc/connect";
import {
  compressedFlag,
  encodeEnvelope,
  readAllBytes,
  type UniversalHandlerFn,
  type UniversalServerResponse,
} from "@connectrpc/connect/protocol";
import {
  codeToHttpStatus,
  endStreamFlag,
  endStreamFromJson,
  endStreamToJson,
  errorFromJsonBytes,
  errorToJsonBytes,
  type EndStreamResponse,
} from "@connectrpc/connect/protocol-connect";
import { findTrailerError, setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { trailerFlag, trailerParse, trailerSerialize } from "@connectrpc/connect/protocol-grpc-web";
import type { Logger } from "../runtime/index.js";
import { toConnectError } from "./error-mapping.js";

/**
 * Errors the protocol layer raises before a request reaches any handler
 * (an undecodable body, a message over the size limit, a bad timeout) or
 * after it (a response over the size limit) do not pass through
 * interceptors, so they would leave without our ErrorDetail, and
 * connect-es reports an undecodable binary body as INTERNAL (HTTP 500 over
 * Connect) although the caller sent it. This wrapper sends them through the
 * one error mapping, where they get the detail and the right code.
 *
 * It rewrites only what is cheap to rewrite: the error body of a unary
 * Connect response, POST or GET (non-200, so never on the success path),
 * the gRPC trailers (checked once when the body ends), and the last
 * envelope of a gRPC-Web or Connect streaming body (its trailers or
 * end-of-stream message); every other chunk passes through untouched.
 */
export function withTypedProtocolErrors(handler: UniversalHandlerFn, logger: Logger): UniversalHandlerFn {
  return async (request) => {
    const response = await handler(request);
    const contentType = request.header.get("content-type") ?? "";
    if (contentType.startsWith("application/grpc-web-text")) return response;
    if (contentType.startsWith("application/grpc-web")) {
      return withTypedEndEnvelope(response, trailerFlag, (data) => typedGrpcWebTrailer(data, logger));
    }
    if (contentType.startsWith("application/grpc")) return withTypedGrpcTrailer(response, logger);
    if (contentType.startsWith("application/connect+")) {
      return withTypedEndEnvelope(response, endStreamFlag, (data) => typedConnectEndStream(data, logger));
    }
    if (response.status !== 200 && (request.method === "GET" || /^application\/(proto|json)/.test(contentType))) {
      return withTypedConnectErrorBody(response, logger);
    }
    return response;
  };
}

/**
 * Rewrites the end envelope of an enveloped body (gRPC-Web trailers, Connect
 * end-of-stream). connect-es writes one envelope per chunk and the end
 * envelope last; a chunk that is not exactly one whole end envelope, or
 * that `rewrite` cannot read, passes through as it is.
 */
function withTypedEndEnvelope(
  response: UniversalServerResponse,
  flag: number,
  rewrite: (data: Uint8Array) => Uint8Array | undefined,
): UniversalServerResponse {
  const { body } = response;
  if (!body) return response;
  async function* typedBody(): AsyncIterable<Uint8Array> {
    for await (const chunk of body ?? []) {
      const flags = chunk[0] ?? 0;
      const isEnd = chunk.length >= 5 && (flags & flag) === flag && (flags & compressedFlag) === 0;
      const length = isEnd ? new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength).getUint32(1) : -1;
      const rewritten = isEnd && length === chunk.length - 5 ? rewrite(chunk.subarray(5)) : undefined;
      yield rewritten ? encodeEnvelope(flags, rewritten) : chunk;
    }
  }
  return { ...response, body: typedBody() };
}

/** gRPC-Web trailers with a detail-less error, re-mapped; undefined to keep them. */
function typedGrpcWebTrailer(data: Uint8Array, logger: Logger): Uint8Array | undefined {
  const trailer = trailerParse(data);
  const error = findTrailerError(trailer);
  if (!error || error.details.length > 0) return undefined;
  setTrailerStatus(trailer, remap(error, logger));
  return trailerSerialize(trailer);
}

/** A Connect end-of-stream message with a detail-less error, re-mapped; undefined to keep it. */
function typedConnectEndStream(data: Uint8Array, logger: Logger): Uint8Array | undefined {
  let end: EndStreamResponse;
  try {
    end = endStreamFromJson(data);
  } catch {
    return undefined;
  }
  if (!end.error || end.error.details.length > 0) return undefined;
  return new TextEncoder().encode(JSON.stringify(endStreamToJson(end.metadata, remap(end.error, logger), undefined)));
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
