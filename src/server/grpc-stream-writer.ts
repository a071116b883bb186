import type { DescMessage, DescMethodServerStreaming, DescService, Message } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext, type Interceptor, type StreamRequest, type StreamResponse } from "@connectrpc/connect";
import { encodedBatchFrame, GRPC_FRAME_HEADER_BYTES, type Logger } from "../runtime/index.js";
import {
  binarySerialization,
  endGrpcResponse,
  type HandlerContextOf,
  type HandlerOptions,
  drainedOrGone,
  isGone,
  nodeHeaders,
  openGrpcCall,
  serializedFrame,
  singleRequest,
  CALL_COMPLETE,
} from "./grpc-call-setup.js";
import type { GrpcCallHandler } from "./grpc-direct-calls.js";

/** A server-streaming implementation as the router holds it, bound to its service. */
export type StreamImpl = (request: Message, context: HandlerContext) => AsyncIterable<Message>;

/**
 * The response side of a server-streaming call over binary gRPC, written
 * straight to the HTTP/2 response by one loop: message, serialize,
 * envelope, write. connect-node passes every message of a stream through
 * about ten async-iterable stages (the implementation's normalisation, the
 * interceptors' wrapper, envelope serialisation, compression, joining, the
 * error catcher, the response writer with its per-chunk listeners), built
 * with down-levelled async generators, which cost more than anything else
 * per watch message (the issue-9 profile: about a third of the runtime's
 * CPU per relayed chunk).
 *
 * The protocol's rules are kept: grpc-timeout, request and response
 * compression (responses over `compressMinBytes` only, as configured),
 * writeMaxBytes, and typed errors in the trailers (see grpc-call-setup.ts).
 */
export function createStreamHandler(
  service: DescService,
  method: DescMethodServerStreaming,
  impl: StreamImpl,
  options: HandlerOptions,
  interceptors: readonly Interceptor[],
  logger: Logger,
): GrpcCallHandler {
  const { input, output } = binarySerialization(method, options);
  const outputSchema: DescMessage = method.output;
  return async (request, response) => {
    const { context, compression, messages } = openGrpcCall(service, method, input, options, request);
    const call = withInterceptors(async (req: StreamRequest): Promise<StreamResponse> => {
      const message = await singleRequest(req.message, "server-streaming");
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
        const frame =
          readyFrame(result.value) ?? (await serializedFrame(result.value, outputSchema, output, compression.response, options));
        if (isGone(response)) throw new ConnectError("client went away", Code.Canceled);
        if (!response.write(frame)) await drainedOrGone(response.stream);
        result = await iterator.next();
      }
      if (trailer) copyHeaders(trailer, context.responseTrailer);
    } catch (error) {
      failure = error;
    }
    finish(context, iterator, failure);
    endGrpcResponse(response, context, failure, logger);
  };
}

/** Aborts the call's context (as connect does when a stream ends) and releases the implementation. */
function finish(context: HandlerContextOf, iterator: AsyncIterator<Message> | undefined, failure: unknown): void {
  context.abort(failure ?? CALL_COMPLETE);
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

/** Merges the headers an interceptor answered with into the call's (unary calls use connect's own rule instead). */
function copyHeaders(from: Headers, to: Headers): void {
  if (from === to) return;
  from.forEach((value, key) => {
    to.set(key, value);
  });
}
