import type { DescMessage, DescMethodStreaming, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import { Code, ConnectError, createContextValues, type ContextValues, type StreamResponse, type Transport } from "@connectrpc/connect";
import {
  compressionBrotli,
  compressionGzip,
  createGrpcTransport,
  type Http2SessionManager,
  type GrpcTransportOptions,
} from "@connectrpc/connect-node";
import {
  createMethodSerializationLookup,
  createMethodUrl,
  encodeEnvelope,
  envelopeCompress,
  runStreamingCall,
  validateReadWriteMaxBytes,
  type Compression,
  type Serialization,
} from "@connectrpc/connect/protocol";
import { requestHeaderWithCompression, validateResponseWithCompression } from "@connectrpc/connect/protocol-grpc";
import { constants, type ClientHttp2Stream, type OutgoingHttpHeaders } from "node:http2";
import { GuardedSessionManager } from "./guarded-session-manager.js";
import { copyNodeHeaders, GrpcStreamReader, type ResponseByteListener } from "./grpc-stream-reader.js";
import { createMessageDecoder } from "./message-decoder.js";
import { connectErrorFromNodeReason } from "./node-errors.js";

/** The options of connect-node's createGrpcTransport, unchanged. */
export type FastGrpcTransportOptions = GrpcTransportOptions;

/** What the fast path needs of connect-node's session manager (its public methods). */
type SessionManager = ResponseByteListener & {
  readonly authority: string;
  request(method: string, path: string, headers: OutgoingHttpHeaders, options: object): ReturnType<Http2SessionManager["request"]>;
};

/** The options after connect-node's defaults, as its own transport applies them. */
interface FastPathOptions {
  baseUrl: string;
  sessionManager: SessionManager;
  interceptors: NonNullable<GrpcTransportOptions["interceptors"]>;
  binaryOptions: GrpcTransportOptions["binaryOptions"];
  jsonOptions: GrpcTransportOptions["jsonOptions"];
  acceptCompression: Compression[];
  sendCompression: Compression | null;
  defaultTimeoutMs: number | undefined;
  readMaxBytes: number;
  writeMaxBytes: number;
  compressMinBytes: number;
}

/**
 * connect-node's gRPC transport, except that server-streaming calls in the
 * binary format are read by {@link GrpcStreamReader}: one loop over the
 * HTTP/2 stream's data instead of connect's chain of async-iterable stages
 * per message (see docs/grpc-client.md for what this saves).
 *
 * Everything that decides behaviour stays connect's: the interceptors run
 * through its `runStreamingCall` (so they see the same request, response
 * header and trailer, and the deadline and abort signal are its own), the
 * request headers are built by its `requestHeaderWithCompression`, the
 * response is checked by its `validateResponseWithCompression` and
 * `validateTrailer`, messages are parsed by its serialization (binaryOptions,
 * readMaxBytes), and the HTTP/2 stream comes from its `Http2SessionManager`
 * (keepalive pings, reconnection). Unary calls, client and bidi streams,
 * and the JSON format use connect's transport as they are.
 */
export function createFastGrpcTransport(options: FastGrpcTransportOptions): Transport {
  const sessionManager =
    options.sessionManager ??
    new GuardedSessionManager(
      options.baseUrl,
      {
        pingIntervalMs: options.pingIntervalMs,
        pingIdleConnection: options.pingIdleConnection,
        pingTimeoutMs: options.pingTimeoutMs,
        idleConnectionTimeoutMs: options.idleConnectionTimeoutMs,
      },
      options.nodeOptions,
    );
  // One HTTP/2 connection for both paths.
  const connect = createGrpcTransport({ ...options, sessionManager });
  if (options.useBinaryFormat === false) return connect;
  const fast: FastPathOptions = {
    baseUrl: options.baseUrl,
    sessionManager: sessionManager as SessionManager,
    interceptors: options.interceptors ?? [],
    binaryOptions: options.binaryOptions,
    jsonOptions: options.jsonOptions,
    acceptCompression: options.acceptCompression ?? [compressionGzip, compressionBrotli],
    sendCompression: options.sendCompression ?? null,
    defaultTimeoutMs: options.defaultTimeoutMs,
    ...validateReadWriteMaxBytes(options.readMaxBytes, options.writeMaxBytes, options.compressMinBytes),
  };
  return {
    unary: connect.unary.bind(connect),
    stream(method, signal, timeoutMs, header, input, contextValues) {
      if (method.methodKind !== "server_streaming") return connect.stream(method, signal, timeoutMs, header, input, contextValues);
      return serverStream(fast, method, signal, timeoutMs, header, input, contextValues);
    },
  };
}

/** One server-streaming call: connect's call frame around the fast reader (connect's transport.stream, minus its pipeline). */
function serverStream<I extends DescMessage, O extends DescMessage>(
  options: FastPathOptions,
  method: DescMethodStreaming<I, O>,
  signal: AbortSignal | undefined,
  timeoutMs: number | undefined,
  header: ConstructorParameters<typeof Headers>[0] | undefined,
  input: AsyncIterable<MessageInitShape<I>>,
  contextValues: ContextValues | undefined,
): Promise<StreamResponse<I, O>> {
  const serialization = createMethodSerializationLookup(method, options.binaryOptions, options.jsonOptions, options);
  // As connect's transport: undefined takes the default, zero or less means none.
  const timeout = timeoutMs === undefined ? options.defaultTimeoutMs : timeoutMs <= 0 ? undefined : timeoutMs;
  return runStreamingCall<I, O>({
    interceptors: options.interceptors,
    signal,
    timeoutMs: timeout,
    req: {
      stream: true,
      service: method.parent,
      method,
      requestMethod: "POST",
      url: createMethodUrl(options.baseUrl, method),
      header: requestHeaderWithCompression(true, timeout, header, options.acceptCompression, options.sendCompression),
      contextValues: contextValues ?? createContextValues(),
      message: input,
    },
    next: async (req) => {
      const body = await requestBody(req.message, serialization.getI(true), options);
      const output = decodingOutput(method.output, serialization.getO(true), options);
      const reader = await openStream(options, req.url, req.header, req.signal, body, output);
      const headers = await reader.response;
      const responseHeader = new Headers();
      copyNodeHeaders(headers, responseHeader);
      const { compression, foundStatus, headerError } = validateResponseWithCompression(
        options.acceptCompression,
        headers[":status"] ?? 0,
        responseHeader,
      );
      if (headerError) throw headerError;
      reader.accept(responseHeader, compression ?? null, foundStatus);
      return { ...req, header: responseHeader, trailer: reader.trailer, message: reader };
    },
  });
}

/**
 * connect's output serialization with messages parsed by
 * {@link createMessageDecoder} (the same messages as its `fromBinary`, for
 * less CPU). A message over readMaxBytes, or one the decoder fails on, is
 * handed to connect's own parse, so limits and errors stay connect's.
 */
function decodingOutput<O extends DescMessage>(
  schema: O,
  connectOutput: Serialization<MessageShape<O>>,
  options: FastPathOptions,
): Serialization<MessageShape<O>> {
  const decode = createMessageDecoder(schema, options.binaryOptions);
  const readMaxBytes = options.readMaxBytes;
  return {
    serialize: (message) => connectOutput.serialize(message),
    parse(data) {
      if (data.byteLength > readMaxBytes) return connectOutput.parse(data);
      try {
        return decode(data);
      } catch {
        return connectOutput.parse(data);
      }
    },
  };
}

/** The request messages (one, for a server stream), serialized, compressed as configured and enveloped. */
async function requestBody<I extends DescMessage>(
  messages: AsyncIterable<MessageShape<I>>,
  serialization: Serialization<MessageShape<I>>,
  options: FastPathOptions,
): Promise<Uint8Array[]> {
  const frames: Uint8Array[] = [];
  for await (const message of messages) {
    const envelope = await envelopeCompress(
      { flags: 0, data: serialization.serialize(message) },
      options.sendCompression,
      options.compressMinBytes,
    );
    frames.push(encodeEnvelope(envelope.flags, envelope.data));
  }
  return frames;
}

/** Sends the request on a stream of the session manager's connection; the reader listens before anything can arrive. */
async function openStream<O extends DescMessage>(
  options: FastPathOptions,
  url: string,
  header: Headers,
  signal: AbortSignal,
  body: Uint8Array[],
  output: Serialization<MessageShape<O>>,
): Promise<GrpcStreamReader<MessageShape<O>>> {
  const target = new URL(url);
  const sessionManager = options.sessionManager;
  if (target.origin !== sessionManager.authority) {
    const message = `cannot make a request to ${target.origin}: the http2 session is connected to ${sessionManager.authority}`;
    throw new ConnectError(message, Code.Internal);
  }
  const stream = await untilAborted(sessionManager.request("POST", target.pathname + target.search, nodeHeaders(header), {}), signal);
  const reader = new GrpcStreamReader<MessageShape<O>>(stream, signal, sessionManager, output, options.readMaxBytes);
  for (const frame of body) stream.write(frame);
  stream.end();
  return reader;
}

/**
 * The stream once the session gives it, or the call's abort (a deadline or a
 * cancel while connecting); a stream given after the abort is cancelled.
 */
function untilAborted(request: Promise<ClientHttp2Stream>, signal: AbortSignal): Promise<ClientHttp2Stream> {
  return new Promise((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    if (signal.aborted) onAbort();
    else signal.addEventListener("abort", onAbort, { once: true });
    request.then(
      (stream) => {
        signal.removeEventListener("abort", onAbort);
        if (signal.aborted) stream.close(constants.NGHTTP2_CANCEL);
        else resolve(stream);
      },
      (error: unknown) => {
        signal.removeEventListener("abort", onAbort);
        // Connection failures are typed as connect-node types them (ECONNREFUSED is Unavailable...).
        reject(connectErrorFromNodeReason(error));
      },
    );
  });
}

/** Web Headers as Node's outgoing headers (repeated names become arrays, as connect-node sends them). */
function nodeHeaders(header: Headers): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  header.forEach((value, key) => {
    const existing = out[key];
    if (existing === undefined) out[key] = value;
    else out[key] = Array.isArray(existing) ? [...existing, value] : [String(existing), value];
  });
  return out;
}
