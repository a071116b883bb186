import {
  Code,
  ConnectError,
  type ContextValues,
  createRouterTransport,
  type Interceptor,
  type ServiceImpl,
  type Transport,
} from "@connectrpc/connect";
import { trace } from "@opentelemetry/api";
import { Health, HealthCheckResponse_ServingStatus } from "../../../gen/grpc/health/v1/health_pb.js";
import { traceContextOf } from "../../../src/telemetry/tracing/index.js";

/**
 * A small service for the interceptor's unit tests: grpc.health.v1.Health
 * (one unary and one server-streaming method), implemented to report what
 * the handler saw of the trace — the `traceparent` it received, the span of
 * its call's trace context (its context values) and the active span, after
 * awaits — and to fail or hang on request.
 */

/** What the handlers observed, in call order. */
export interface Observed {
  traceparents: (string | null)[];
  /** The span id of the call's trace context in a handler, one entry per observation point. */
  callSpanIds: (string | undefined)[];
  /** Its trace id at the same points. */
  callTraceIds: (string | undefined)[];
  /** The active span's id at the same points (only a context manager makes one active across awaits). */
  activeSpanIds: (string | undefined)[];
}

/** An empty record of observations. */
export function observations(): Observed {
  return { traceparents: [], callSpanIds: [], callTraceIds: [], activeSpanIds: [] };
}

/** Services that make the fixture misbehave. */
export const FAIL_NOT_FOUND = "fail-not-found";
export const FAIL_INTERNAL = "fail-internal";
export const HANG = "hang";

/** Records the ids of the call's span and of the active one. */
function observe(observed: Observed, values: ContextValues): void {
  const traced = traceContextOf(values);
  const spanContext = traced && trace.getSpan(traced)?.spanContext();
  observed.callSpanIds.push(spanContext?.spanId);
  observed.callTraceIds.push(spanContext?.traceId);
  observed.activeSpanIds.push(trace.getActiveSpan()?.spanContext().spanId);
}
const tick = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 1));

function healthImpl(observed: Observed): ServiceImpl<typeof Health> {
  return {
    async check(request, ctx) {
      observed.traceparents.push(ctx.requestHeader.get("traceparent"));
      await tick();
      observe(observed, ctx.values);
      if (request.service === FAIL_NOT_FOUND) throw new ConnectError("no such service", Code.NotFound);
      if (request.service === FAIL_INTERNAL) throw new ConnectError("broken", Code.Internal);
      return { status: HealthCheckResponse_ServingStatus.SERVING };
    },
    async *watch(request, ctx) {
      observed.traceparents.push(ctx.requestHeader.get("traceparent"));
      for (let i = 0; i < 3; i++) {
        await tick();
        observe(observed, ctx.values);
        yield { status: HealthCheckResponse_ServingStatus.SERVING };
        if (request.service === HANG) {
          // Waits for the client to go, as a watch does.
          await new Promise<void>((resolve) => ctx.signal.addEventListener("abort", () => resolve(), { once: true }));
          return;
        }
      }
    },
  };
}

/** An in-memory transport to the fixture, with server and client interceptors. */
export function healthTransport(observed: Observed, server: Interceptor[], client: Interceptor[]): Transport {
  return createRouterTransport((router) => router.service(Health, healthImpl(observed)), {
    router: { interceptors: server },
    transport: { interceptors: client },
  });
}

/** A client interceptor that sets a header on every call. */
export function withHeader(name: string, value: string): Interceptor {
  return (next) => (request) => {
    request.header.set(name, value);
    return next(request);
  };
}
