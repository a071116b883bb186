import { type ContextValues, createContextKey } from "@connectrpc/connect";
import type { Context } from "@opentelemetry/api";

/**
 * The trace context of the RPC being served — its server span — which the
 * server tracing interceptor puts into the call's context values. It
 * travels explicitly from there, as the log fields do
 * (src/server/log-context.ts): a service hands it to the Runtime method
 * that starts a run, the logging interceptor puts its ids on the call's
 * lines, and a Backend's routed call passes the values on to its client,
 * whose tracing interceptor makes its span a child of it. No ambient
 * context (AsyncLocalStorage) is installed: on Node 20 and 22 one puts
 * promise hooks on every promise in the process.
 */
export const rpcTraceContext = createContextKey<Context | undefined>(undefined, { description: "worker-runtime: the RPC's trace context" });

/** The trace context of the call `values` belong to (a handler's `ctx.values`, an interceptor's `request.contextValues`), if traced. */
export function traceContextOf(values: ContextValues): Context | undefined {
  return values.get(rpcTraceContext);
}
