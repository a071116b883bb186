import { create, type DescMessage, type DescMethod, type DescService, type Message } from "@bufbuild/protobuf";
import { Code, ConnectError, createHandlerContext } from "@connectrpc/connect";
import {
  compressionNegotiate,
  createMethodSerializationLookup,
  encodeEnvelope,
  envelopeCompress,
  limitSerialization,
  pipe,
  transformDecompressEnvelope,
  transformParseEnvelope,
  transformSplitEnvelope,
  type validateUniversalHandlerOptions,
  type Compression,
  type EnvelopedMessage,
  type Serialization,
  type UniversalServerRequest,
} from "@connectrpc/connect/protocol";
import {
  contentTypeProto,
  grpcStatusOk,
  headerAcceptEncoding,
  headerContentType,
  headerEncoding,
  headerGrpcStatus,
  headerTimeout,
  parseTimeout,
  setTrailerStatus,
} from "@connectrpc/connect/protocol-grpc";
import type * as http2 from "node:http2";
import { createMessageEncoder, type Logger } from "../runtime/index.js";
import { isClientGone, toConnectError } from "./error-mapping.js";

/**
 * What the direct binary gRPC handlers (grpc-unary-call.ts,
 * grpc-stream-writer.ts) share with each other and with connect's own gRPC
 * handler: the call's context (deadline, abort on client reset), the
 * negotiated compression, the request messages read by connect's transforms,
 * and the end of the response (trailers with a typed error status).
 */

export type HandlerOptions = ReturnType<typeof validateUniversalHandlerOptions>;
export type HandlerContextOf = ReturnType<typeof createHandlerContext>;

/**
 * The reason a call's signal is aborted with when the call is done without a
 * failure. connect aborts with no reason, which makes Node build a fresh
 * DOMException (a stack capture, ~10 µs) for every call; one shared
 * `AbortError` tells listeners the same thing.
 */
export const CALL_COMPLETE = new DOMException("The call is complete", "AbortError");

/** A method's binary request parser and response serializer (the planned encoder, toBinary's bytes), with the handler options' size limits. */
export function binarySerialization(
  method: DescMethod,
  options: HandlerOptions,
): { input: Serialization<Message>; output: Serialization<Message> } {
  const lookup = createMethodSerializationLookup(method, options.binaryOptions, options.jsonOptions, options);
  const output = lookup.getO(true);
  // Options that change toBinary's output keep connect's serialization.
  if (options.binaryOptions?.writeUnknownFields === false) return { input: lookup.getI(true), output };
  const encode = createMessageEncoder(method.output);
  const planned = limitSerialization<Message>(
    {
      parse: output.parse,
      // The planned encoder's bytes are toBinary's; what toBinary refuses, connect's serialization refuses with its own error.
      serialize: (data) => {
        try {
          return encode(data);
        } catch {
          return output.serialize(data);
        }
      },
    },
    options,
  );
  return { input: lookup.getI(true), output: { parse: output.parse, serialize: planned.serialize } };
}

/** One call as both direct handlers start it. */
export interface OpenedGrpcCall {
  context: HandlerContextOf;
  /** The negotiated compression: `response` when the client accepts one of ours. */
  compression: ReturnType<typeof compressionNegotiate>;
  /** The request's messages, split, decompressed and parsed as connect does; fails when read if the encoding or timeout was refused. */
  messages: AsyncIterable<Message>;
}

/**
 * Opens a call as connect's gRPC handler does: `grpc-timeout` (a bad or too
 * long one, like a refused encoding, is raised when the request is read, so
 * it ends the call with an error status), the handler context, and the
 * response encoding header.
 */
export function openGrpcCall(
  service: DescService,
  method: DescMethod,
  input: Serialization<Message>,
  options: HandlerOptions,
  request: UniversalServerRequest,
): OpenedGrpcCall {
  const timeout = parseTimeout(request.header.get(headerTimeout), options.maxTimeoutMs);
  const context = createHandlerContext({
    service,
    method,
    protocolName: "grpc",
    requestMethod: request.method,
    url: request.url,
    timeoutMs: timeout.timeoutMs,
    shutdownSignal: options.shutdownSignal,
    requestSignal: request.signal,
    requestHeader: request.header,
    responseHeader: { [headerContentType]: contentTypeProto },
    responseTrailer: { [headerGrpcStatus]: grpcStatusOk },
    contextValues: request.contextValues,
  });
  const compression = compressionNegotiate(
    options.acceptCompression,
    request.header.get(headerEncoding),
    request.header.get(headerAcceptEncoding),
    headerAcceptEncoding,
  );
  if (compression.response) context.responseHeader.set(headerEncoding, compression.response.name);
  const refused = compression.error ?? timeout.error;
  const messages = refused
    ? failing<Message>(refused)
    : pipe(
        request.body as AsyncIterable<Uint8Array>,
        transformSplitEnvelope(options.readMaxBytes),
        transformDecompressEnvelope(compression.request, options.readMaxBytes),
        transformParseEnvelope(input),
      );
  return { context, compression, messages };
}

/** An input that fails when read (a refused encoding or timeout). */
function failing<T>(error: Error): AsyncIterable<T> {
  return { [Symbol.asyncIterator]: () => ({ next: () => Promise.reject(error) }) };
}

/** The one request message of a unary or server-streaming call, with connect's errors for none or more. */
export async function singleRequest<T>(messages: AsyncIterable<T>, kind: "unary" | "server-streaming"): Promise<T> {
  const it = messages[Symbol.asyncIterator]();
  const first = await it.next();
  if (first.done === true) throw new ConnectError(`protocol error: missing input message for ${kind} method`, Code.Unimplemented);
  const second = await it.next();
  if (second.done !== true) throw new ConnectError(`protocol error: received extra input message for ${kind} method`, Code.Unimplemented);
  return first.value;
}

/** A response message serialized (writeMaxBytes checked), compressed if large and accepted, and framed. */
export async function serializedFrame(
  message: Message,
  outputSchema: DescMessage,
  output: Serialization<Message>,
  responseCompression: Compression | null,
  options: HandlerOptions,
): Promise<Uint8Array> {
  const value = message.$typeName === outputSchema.typeName ? message : create(outputSchema, message);
  let envelope: EnvelopedMessage = { flags: 0, data: output.serialize(value) };
  if (responseCompression && envelope.data.byteLength >= options.compressMinBytes) {
    envelope = await envelopeCompress(envelope, responseCompression, options.compressMinBytes);
  }
  return encodeEnvelope(envelope.flags, envelope.data);
}

/**
 * Ends a call's response: its trailers (the error status when it failed,
 * typed by the one error mapping) and the end of the stream. A response
 * whose client went away is left as it is; a failure other than the
 * client leaving is logged, since nobody else will see it.
 */
export function endGrpcResponse(response: http2.Http2ServerResponse, context: HandlerContextOf, failure: unknown, logger: Logger): void {
  if (isGone(response)) {
    if (failure !== undefined && !isClientGone(failure)) logger.info("call ended after its client went away", { cause: String(failure) });
    return;
  }
  if (failure !== undefined) setTrailerStatus(context.responseTrailer, toConnectError(failure, logger));
  response.addTrailers(nodeHeaders(context.responseTrailer));
  response.end();
}

export function isGone(response: http2.Http2ServerResponse): boolean {
  return response.stream.destroyed || response.stream.closed;
}

/** Resolves when the stream can take more, or has closed; at once if it has closed already (it will emit neither). */
export function drainedOrGone(stream: http2.Http2Stream): Promise<void> {
  if (stream.destroyed || stream.closed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      stream.off("drain", done);
      stream.off("close", done);
      resolve();
    };
    stream.once("drain", done);
    stream.once("close", done);
  });
}

/**
 * Headers for Node's writeHead/addTrailers. `forEach` joins repeated fields
 * except set-cookie, which it yields once per value: those stay separate
 * fields, as connect-node sends them (a joined cookie list is not one cookie).
 */
export function nodeHeaders(headers: Headers): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  headers.forEach((value, key) => {
    const earlier = out[key];
    out[key] = earlier === undefined ? value : [...(Array.isArray(earlier) ? earlier : [earlier]), value];
  });
  return out;
}
