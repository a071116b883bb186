import {
  type Attributes,
  type Context,
  context,
  propagation,
  ROOT_CONTEXT,
  type Span,
  SpanKind,
  SpanStatusCode,
  type TextMapGetter,
  type TextMapSetter,
  trace,
} from "@opentelemetry/api";
import { Code, ConnectError, type Interceptor, type StreamResponse, type UnaryResponse } from "@connectrpc/connect";
import { rpcTraceContext, traceContextOf } from "./rpc-trace-context.js";

/**
 * OpenTelemetry spans and W3C trace-context propagation for Connect
 * (connect-es has no official instrumentation). One span per RPC, never one
 * per message: a unary call's span ends with its response, a streaming
 * call's when its response stream ends — completed, failed, or cancelled by
 * the client (the request's signal). A server span's context reaches the
 * handler in the call's context values (rpc-trace-context.ts), and a client
 * span is the child of the context values' call, so a Backend's upstream
 * calls belong to the call they serve. The span's context is also made
 * active around the call and each step of a streamed response, for an
 * embedder that installs its own context manager; this process installs
 * none.
 *
 * Only the `@opentelemetry/api` is used: with no SDK registered every span
 * is a no-op, nothing is extracted or injected, and a stream is passed
 * through unwrapped, so the interceptors cost next to nothing when tracing
 * is off. Attributes follow the stable RPC semantic conventions (semconv
 * 1.40+): span name and `rpc.method` are `package.Service/Method`,
 * `rpc.system.name` is `grpc` or `connectrpc`, `rpc.response.status_code`
 * the status as the protocol spells it, `error.type` on failure.
 */

/** The RPC systems of the semantic conventions this server speaks. */
export type RpcSystem = "grpc" | "connectrpc";

/** Options for {@link createServerTracingInterceptor}. */
export interface ServerTracingOptions {
  /**
   * Services not traced (full names): probes and tooling, e.g.
   * `grpc.health.v1.Health`, which a load balancer calls every few seconds.
   */
  untracedServices?: readonly string[];
}

/** Options for {@link createClientTracingInterceptor}. */
export interface ClientTracingOptions {
  /** The protocol of the transport the interceptor is installed on. */
  rpcSystem: RpcSystem;
  /** Where the calls go (`server.address`, `server.port`); omitted for an in-process transport. */
  serverAddress?: string;
  serverPort?: number;
}

/** The instrumentation scope of every span made here. */
const TRACER_NAME = "worker-runtime/connect";

/** Reads propagation fields from Connect's request headers. */
const headerGetter: TextMapGetter<Headers> = {
  keys: (headers) => [...headers.keys()],
  get: (headers, key) => headers.get(key) ?? undefined,
};

/** Writes propagation fields into Connect's request headers. */
const headerSetter: TextMapSetter<Headers> = {
  set: (headers, key, value) => headers.set(key, value),
};

/**
 * Server spans (kind SERVER) for every RPC: the parent is the trace context
 * the caller sent (`traceparent`, `tracestate`, as the registered
 * propagator reads them); a malformed one is ignored and the span starts a
 * new trace. Install it first (outermost), so it sees the final status of
 * every call, including the typed errors of inner interceptors.
 */
export function createServerTracingInterceptor(options: ServerTracingOptions = {}): Interceptor {
  const untraced = new Set(options.untracedServices ?? []);
  return (next) => async (request) => {
    if (untraced.has(request.service.typeName)) return next(request);
    const parent = propagation.extract(ROOT_CONTEXT, request.header, headerGetter);
    const method = `${request.service.typeName}/${request.method.name}`;
    const system = rpcSystemOf(request.header.get("content-type"));
    const attributes: Attributes = { "rpc.system.name": system, "rpc.method": method };
    const span = trace.getTracer(TRACER_NAME).startSpan(method, { kind: SpanKind.SERVER, attributes }, parent);
    const spanContext = trace.setSpan(parent, span);
    // Only a real trace travels on (with no SDK the span is a placeholder): sampled or not, runs and upstream calls continue it.
    if (trace.isSpanContextValid(span.spanContext())) request.contextValues.set(rpcTraceContext, spanContext);
    return traceCall(span, spanContext, system, "server", request.signal, () => next(request));
  };
}

/**
 * Client spans (kind CLIENT) for every call made through a transport, as
 * children of the call whose context values the call is given (a served
 * RPC's server span: pass `contextValues: ctx.values`), else of the active
 * span, which in this process (no context manager) is none: the call then
 * starts a new trace. The trace context is injected into the request
 * headers so the server's span continues the same trace.
 */
export function createClientTracingInterceptor(options: ClientTracingOptions): Interceptor {
  const server: Attributes = {};
  if (options.serverAddress !== undefined) server["server.address"] = options.serverAddress;
  if (options.serverPort !== undefined) server["server.port"] = options.serverPort;
  return (next) => async (request) => {
    // The call being served, when the caller passed its context values on (a Backend's routed call).
    const parent = traceContextOf(request.contextValues) ?? context.active();
    const method = `${request.service.typeName}/${request.method.name}`;
    const attributes: Attributes = { "rpc.system.name": options.rpcSystem, "rpc.method": method, ...server };
    const span = trace.getTracer(TRACER_NAME).startSpan(method, { kind: SpanKind.CLIENT, attributes }, parent);
    const spanContext = trace.setSpan(parent, span);
    propagation.inject(spanContext, request.header, headerSetter);
    return traceCall(span, spanContext, options.rpcSystem, "client", request.signal, () => next(request));
  };
}

type AnyResponse = UnaryResponse | StreamResponse;

/**
 * Runs the call in the span's context and ends the span when the call is
 * over: at once for a unary response, when the stream ends for a streamed
 * one. A span with no trace behind it (no SDK registered) is not wrapped
 * around the stream at all.
 */
async function traceCall<R extends AnyResponse>(
  span: Span,
  spanContext: Context,
  system: RpcSystem,
  side: "server" | "client",
  signal: AbortSignal,
  call: () => Promise<R>,
): Promise<R> {
  let response: R;
  try {
    response = await context.with(spanContext, call);
  } catch (error) {
    endSpan(span, system, side, error);
    throw error;
  }
  if (!response.stream) {
    endSpan(span, system, side, undefined);
    return response;
  }
  if (!trace.isSpanContextValid(span.spanContext())) {
    span.end();
    return response;
  }
  return { ...response, message: tracedStream(response.message, span, spanContext, system, side, signal) };
}

/**
 * The stream's messages, each pulled inside the span's context; the span
 * ends with the stream: its end, its error, the consumer stopping early, or
 * the request's signal aborting (a client gone while the handler waits
 * would otherwise keep the span open until its next message). A plain
 * iterator rather than an async generator: it adds one promise per
 * message, not a generator's several.
 */
function tracedStream<T>(
  messages: AsyncIterable<T>,
  span: Span,
  spanContext: Context,
  system: RpcSystem,
  side: "server" | "client",
  signal: AbortSignal,
): AsyncIterable<T> {
  let ended = false;
  const finish = (error: unknown): void => {
    if (ended) return;
    ended = true;
    signal.removeEventListener("abort", onAbort);
    endSpan(span, system, side, error);
  };
  const onAbort = (): void => finish(signal.reason ?? new ConnectError("the call was cancelled", Code.Canceled));
  if (signal.aborted) onAbort();
  else signal.addEventListener("abort", onAbort, { once: true });
  return {
    [Symbol.asyncIterator](): AsyncIterator<T> {
      const iterator = messages[Symbol.asyncIterator]();
      return {
        next: () =>
          context
            .with(spanContext, () => iterator.next())
            .then(
              (result) => {
                if (result.done) finish(undefined);
                return result;
              },
              (error: unknown) => {
                finish(error);
                throw error;
              },
            ),
        return: (value?: unknown) => {
          // The consumer stopped early: the client went away, or the server closed the stream.
          finish(new ConnectError("the stream was closed early", Code.Canceled));
          return iterator.return ? iterator.return(value) : Promise.resolve({ done: true, value: value as T });
        },
      };
    },
  };
}

/**
 * Gives the span its status code attributes and ends it. Per the
 * conventions a client span fails on any error status, a server span only
 * on those that point at the server (a caller's bad argument is not the
 * server's failure).
 */
function endSpan(span: Span, system: RpcSystem, side: "server" | "client", error: unknown): void {
  if (!span.isRecording()) {
    span.end();
    return;
  }
  const code = error === undefined ? undefined : ConnectError.from(error).code;
  const status = statusName(code, system);
  span.setAttribute("rpc.response.status_code", status);
  if (code !== undefined) {
    span.setAttribute("error.type", status);
    if (side === "client" || SERVER_ERROR_CODES.has(code)) span.setStatus({ code: SpanStatusCode.ERROR, message: status });
  }
  span.end();
}

/** The codes that make a server span an error (the gRPC conventions' list). */
const SERVER_ERROR_CODES: ReadonlySet<Code> = new Set([
  Code.Unknown,
  Code.DeadlineExceeded,
  Code.Unimplemented,
  Code.Internal,
  Code.Unavailable,
  Code.DataLoss,
]);

/**
 * A status as its protocol spells it: gRPC's `OK`, `NOT_FOUND`, `CANCELLED`;
 * Connect's `ok`, `not_found`, `canceled` (Connect has no name for success; `ok` by analogy).
 */
export function statusName(code: Code | undefined, system: RpcSystem): string {
  const snake = code === undefined ? "ok" : Code[code].replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase();
  if (system === "connectrpc") return snake;
  return code === Code.Canceled ? "CANCELLED" : snake.toUpperCase();
}

/** gRPC (and gRPC-Web, which carries gRPC's semantics) or Connect, from the request's content type. */
function rpcSystemOf(contentType: string | null): RpcSystem {
  return contentType?.startsWith("application/grpc") ? "grpc" : "connectrpc";
}
