import { create, type DescMessage, type DescMethodServerStreaming, type DescService, type Message } from "@bufbuild/protobuf";
import {
  Code,
  ConnectError,
  createHandlerContext,
  type ConnectRouter,
  type ConnectRouterOptions,
  type HandlerContext,
  type Interceptor,
  type StreamRequest,
  type StreamResponse,
} from "@connectrpc/connect";
import {
  compressionNegotiate,
  createMethodSerializationLookup,
  encodeEnvelope,
  envelopeCompress,
  pipe,
  transformDecompressEnvelope,
  transformParseEnvelope,
  transformSplitEnvelope,
  validateUniversalHandlerOptions,
  type EnvelopedMessage,
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
  parseContentType,
  parseTimeout,
  setTrailerStatus,
} from "@connectrpc/connect/protocol-grpc";
import type * as http2 from "node:http2";
import { encodedBatchFrame, GRPC_FRAME_HEADER_BYTES, type Logger } from "../runtime/index.js";
import { isClientGone, toConnectError } from "./error-mapping.js";

/**
 * The response side of server-streaming RPCs over binary gRPC (what the
 * backend, the CLI and grpcurl speak), written straight to the HTTP/2
 * response by one loop: message, serialize, envelope, write. connect-node
 * passes every message of a stream through about ten async-iterable stages
 * (the implementation's normalisation, the interceptors' wrapper, envelope
 * serialisation, compression, joining, the error catcher, the response
 * writer with its per-chunk listeners), built with down-levelled async
 * generators, which cost more than anything else per watch message (the
 * issue-9 profile: about a third of the runtime's CPU per relayed chunk).
 *
 * Everything else stays connect's: the request is read and parsed by its
 * transforms, the same interceptors run (auth, error mapping, whatever is
 * added), the handler context is its own (deadline, abort on client reset),
 * and the protocol's rules are kept: grpc-timeout (a bad or too-long one is
 * an error status), request and response compression (responses over
 * `compressMinBytes` only, as configured), writeMaxBytes, and typed errors in
 * the trailers. JSON gRPC, gRPC-Web and Connect requests keep connect's path.
 */
export interface GrpcStreamMethods {
  /** The handler for a request, when it is a server-streaming call over binary gRPC on HTTP/2; undefined otherwise. */
  handlerFor(path: string, request: { method?: string | undefined; headers: Record<string, unknown> }): GrpcStreamHandler | undefined;
}

/** Serves one call; never rejects (failures end the stream with an error status or are logged). */
export type GrpcStreamHandler = (request: UniversalServerRequest, response: http2.Http2ServerResponse) => Promise<void>;

type StreamImpl = (request: Message, context: HandlerContext) => AsyncIterable<Message>;

/**
 * Wraps `router.service` so every server-streaming method registered
 * afterwards (without per-service options) gets a fast-path handler; call
 * before the routes register their services.
 */
export function captureGrpcStreamMethods(router: ConnectRouter, routerOptions: ConnectRouterOptions, logger: Logger): GrpcStreamMethods {
  const options = validateUniversalHandlerOptions(routerOptions);
  const handlers = new Map<string, GrpcStreamHandler>();
  const register = router.service.bind(router);
  const service: ConnectRouter["service"] = (desc, implementation, serviceOptions) => {
    if (serviceOptions === undefined) {
      for (const method of desc.methods) {
        const impl = (implementation as Record<string, unknown>)[method.localName];
        if (method.methodKind !== "server_streaming" || typeof impl !== "function") continue;
        const bound = (impl as StreamImpl).bind(implementation);
        handlers.set(
          `/${desc.typeName}/${method.name}`,
          createStreamHandler(desc, method as DescMethodServerStreaming, bound, options, routerOptions, logger),
        );
      }
    }
    register(desc, implementation, serviceOptions);
    return router;
  };
  router.service = service;
  return {
    handlerFor(path, request) {
      const handler = handlers.get(path);
      if (!handler || request.method !== "POST") return undefined;
      const type = parseContentType(String(request.headers["content-type"] ?? ""));
      return type?.binary ? handler : undefined;
    },
  };
}

type HandlerOptions = ReturnType<typeof validateUniversalHandlerOptions>;

function createStreamHandler(
  service: DescService,
  method: DescMethodServerStreaming,
  impl: StreamImpl,
  options: HandlerOptions,
  routerOptions: ConnectRouterOptions,
  logger: Logger,
): GrpcStreamHandler {
  const serialization = createMethodSerializationLookup(method, options.binaryOptions, options.jsonOptions, options);
  const input = serialization.getI(true);
  const output = serialization.getO(true);
  const outputSchema: DescMessage = method.output;
  const interceptors = routerOptions.interceptors ?? [];
  return async (request, response) => {
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
    // A refused encoding or timeout is raised inside the call, so it ends the call with an error status, as in connect.
    const refused = compression.error ?? timeout.error;
    const messages = refused
      ? failing<Message>(refused)
      : pipe(
          request.body as AsyncIterable<Uint8Array>,
          transformSplitEnvelope(options.readMaxBytes),
          transformDecompressEnvelope(compression.request, options.readMaxBytes),
          transformParseEnvelope(input),
        );
    const call = withInterceptors(async (req: StreamRequest): Promise<StreamResponse> => {
      const message = await single(req.message);
      const handlerContext: HandlerContext = {
        ...context,
        service: req.service,
        requestHeader: req.header,
        signal: req.signal,
        values: req.contextValues,
      };
      return {
        stream: true,
        message: impl(message, handlerContext),
        method,
        service,
        header: context.responseHeader,
        trailer: context.responseTrailer,
      };
    }, interceptors);

    /** A watch batch's ready gRPC frame (see wire-batch.ts), unless it must be compressed. */
    const readyFrame = (message: Message): Uint8Array | undefined => {
      const ready = encodedBatchFrame(message);
      if (!ready) return undefined;
      const bodyBytes = ready.byteLength - GRPC_FRAME_HEADER_BYTES;
      if (compression.response && bodyBytes >= options.compressMinBytes) return undefined;
      // As connect's serializer checks it.
      if (bodyBytes > options.writeMaxBytes) {
        throw new ConnectError(
          `message size ${bodyBytes} is larger than configured writeMaxBytes ${options.writeMaxBytes}`,
          Code.ResourceExhausted,
        );
      }
      return ready;
    };
    /** Any other message: serialized, compressed if large and accepted, framed. */
    const serializedFrame = async (message: Message): Promise<Uint8Array> => {
      const value = message.$typeName === outputSchema.typeName ? message : create(outputSchema, message);
      let envelope: EnvelopedMessage = { flags: 0, data: output.serialize(value) };
      if (compression.response && envelope.data.byteLength >= options.compressMinBytes) {
        envelope = await envelopeCompress(envelope, compression.response, options.compressMinBytes);
      }
      return encodeEnvelope(envelope.flags, envelope.data);
    };

    let failure: unknown;
    let iterator: AsyncIterator<Message> | undefined;
    let result: IteratorResult<Message> | undefined;
    let trailer: Headers | undefined;
    try {
      const answer = await call({
        stream: true,
        message: messages,
        method,
        service,
        requestMethod: request.method,
        url: request.url,
        signal: context.signal,
        header: context.requestHeader,
        contextValues: context.values,
      });
      copyHeaders(answer.header, context.responseHeader);
      trailer = answer.trailer;
      iterator = answer.message[Symbol.asyncIterator]();
      // The first message before the headers, so the implementation can still set some (as connect does).
      result = await iterator.next();
    } catch (error) {
      failure = error;
    }
    if (isGone(response)) {
      finish(context, iterator, failure);
      return;
    }
    response.writeHead(200, nodeHeaders(context.responseHeader));
    try {
      while (iterator !== undefined && result !== undefined && result.done !== true) {
        const frame = readyFrame(result.value) ?? (await serializedFrame(result.value));
        if (isGone(response)) throw new ConnectError("client went away", Code.Canceled);
        if (!response.write(frame)) await drained(response);
        result = await iterator.next();
      }
      if (trailer) copyHeaders(trailer, context.responseTrailer);
    } catch (error) {
      failure = error;
    }
    finish(context, iterator, failure);
    if (isGone(response)) {
      if (failure !== undefined && !isClientGone(failure))
        logger.info("stream ended after its client went away", { cause: String(failure) });
      return;
    }
    if (failure !== undefined) setTrailerStatus(context.responseTrailer, toConnectError(failure, logger));
    response.addTrailers(nodeHeaders(context.responseTrailer));
    response.end();
  };
}

/** Aborts the call's context (as connect does when a stream ends) and releases the implementation. */
function finish(context: ReturnType<typeof createHandlerContext>, iterator: AsyncIterator<Message> | undefined, failure: unknown): void {
  context.abort(failure);
  iterator?.return?.().catch(() => undefined);
}

/** connect's interceptor chain (the first interceptor outermost) around a streaming call. */
function withInterceptors(
  call: (request: StreamRequest) => Promise<StreamResponse>,
  interceptors: readonly Interceptor[],
): (request: StreamRequest) => Promise<StreamResponse> {
  type AnyFn = Parameters<Interceptor>[0];
  const next = interceptors.reduceRight<AnyFn>((inner, interceptor) => interceptor(inner), call as AnyFn);
  return next as (request: StreamRequest) => Promise<StreamResponse>;
}

/** An input that fails when read (a refused encoding or timeout). */
function failing<T>(error: Error): AsyncIterable<T> {
  return { [Symbol.asyncIterator]: () => ({ next: () => Promise.reject(error) }) };
}

/** The one request message of a server-streaming call. */
async function single<T>(messages: AsyncIterable<T>): Promise<T> {
  const it = messages[Symbol.asyncIterator]();
  const first = await it.next();
  if (first.done === true) throw new ConnectError("protocol error: missing input message for server-streaming method", Code.Unimplemented);
  const second = await it.next();
  if (second.done !== true) {
    throw new ConnectError("protocol error: received extra input message for server-streaming method", Code.Unimplemented);
  }
  return first.value;
}

function isGone(response: http2.Http2ServerResponse): boolean {
  return response.stream.destroyed || response.stream.closed;
}

/** Resolves when the response can take more, or has closed. */
function drained(response: http2.Http2ServerResponse): Promise<void> {
  // A stream that closed already will emit neither.
  if (isGone(response)) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      response.off("drain", done);
      response.off("close", done);
      resolve();
    };
    response.once("drain", done);
    response.once("close", done);
  });
}

function copyHeaders(from: Headers, to: Headers): void {
  if (from === to) return;
  from.forEach((value, key) => {
    to.set(key, value);
  });
}

function nodeHeaders(headers: Headers): Record<string, string> {
  const out: Record<string, string> = {};
  headers.forEach((value, key) => {
    out[key] = value;
  });
  return out;
}
