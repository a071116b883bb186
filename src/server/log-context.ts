import { type ContextValues, createContextKey, type HandlerContext } from "@connectrpc/connect";
import type { InputOptions, LogFields } from "../runtime/index.js";
import { traceContextOf } from "../telemetry/tracing/index.js";

/**
 * The log fields of the RPC being served — its `request_id` and
 * `rpc_method` — which the logging interceptor puts into the call's context
 * values. They travel explicitly from there: a service hands them to the
 * Runtime method that starts a run ({@link inputOptionsOf}), which keeps
 * them with the run for every line it logs, and a Backend's routed call
 * passes the values on to its client, whose interceptor forwards the
 * request id. Not an AsyncLocalStorage: on Node 20 and 22 one in use puts
 * promise hooks on every promise in the process (~9 % of the runtime's CPU
 * per relayed chunk).
 */
export const rpcLogFields = createContextKey<LogFields | undefined>(undefined, { description: "worker-runtime: the RPC's log fields" });

/** The log fields of the call `values` belong to (a handler's `ctx.values`, an interceptor's `request.contextValues`), if any. */
export function logFieldsOf(values: ContextValues): LogFields | undefined {
  return values.get(rpcLogFields);
}

/**
 * The Runtime options of a call that accepts input: its log fields, for the
 * lines of the run it starts or resumes, and its trace context, for that
 * run's span.
 */
export function inputOptionsOf(ctx: HandlerContext): InputOptions {
  const logFields = logFieldsOf(ctx.values);
  const traceContext = traceContextOf(ctx.values);
  return { ...(logFields ? { logFields } : {}), ...(traceContext ? { traceContext } : {}) };
}
