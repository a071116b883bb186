import { Code, ConnectError, type ContextValues, type Interceptor } from "@connectrpc/connect";
import { randomUUID } from "node:crypto";
import { bounded, type LogFields, type Logger, traceLogFields } from "../runtime/index.js";
import { traceContextOf } from "../telemetry/tracing/index.js";
import { isClientGone } from "./error-mapping.js";
import { rpcLogFields } from "./log-context.js";
import { onStreamEnd } from "./stream-end.js";

/** The header a request id travels in, both ways. */
export const REQUEST_ID_HEADER = "x-request-id";

/** A caller's request id is kept if it is 1-128 of these characters (no spaces, no control bytes, nothing to forge log lines with). */
const VALID_REQUEST_ID = /^[A-Za-z0-9._:/+=-]{1,128}$/;

/**
 * The longest worker or run id copied from a message into the call's
 * completion line. They come from the caller, before authentication and
 * validation: a 4 MiB "id" must not become a 4 MiB log line.
 */
const MAX_LOGGED_ID_CHARS = 128;

/** Codes that mean the server, not the caller, failed. */
const SERVER_FAULT = new Set([Code.Internal, Code.Unknown, Code.DataLoss]);

/**
 * Gives each RPC its log fields — its request id (the caller's valid
 * `x-request-id`, else a new one, echoed in the response headers or error
 * metadata), its method, and its server span's `trace_id` and `span_id`
 * when traced — in the call's context values (see log-context.ts:
 * services pass them on to the runs they start), and logs its completion
 * with them and the worker and run ids its request (or response) names:
 * debug when it succeeds or the client cancelled it, warn for an error the
 * caller caused, error for one the server did. Never logs a request or
 * response message: those carry model text and tool payloads.
 */
export function createLoggingInterceptor(logger: Logger): Interceptor {
  return (next) => async (request) => {
    const requestId = requestIdOf(request.header.get(REQUEST_ID_HEADER));
    const fields = callLogFields(requestId, request);
    request.contextValues.set(rpcLogFields, fields);
    const line = request.stream ? fields : { ...fields, ...idsOf(request.message) };
    const started = performance.now();
    const done = (error: unknown, context: LogFields = line): void =>
      logCompletion(logger, context, request.signal, performance.now() - started, error);
    try {
      const response = await next(request);
      response.header.set(REQUEST_ID_HEADER, requestId);
      if (!response.stream) {
        done(undefined, { ...idsOf(response.message), ...line });
        return response;
      }
      return { ...response, message: onStreamEnd(response.message, done) };
    } catch (error) {
      if (error instanceof ConnectError) error.metadata.set(REQUEST_ID_HEADER, requestId);
      done(error);
      throw error;
    }
  };
}

/**
 * Gives each RPC the log fields of the call it serves on behalf of, without
 * logging it: for the in-process router of a Backend's embedded Runtime,
 * whose calls the Backend's own logging interceptor already logs. The
 * request id comes in the `x-request-id` the Backend forwards; a call
 * without one (the Backend's own health checks and watches) gets none.
 */
export function createLogFieldsInterceptor(): Interceptor {
  return (next) => (request) => {
    const requestId = request.header.get(REQUEST_ID_HEADER);
    if (requestId !== null && VALID_REQUEST_ID.test(requestId)) request.contextValues.set(rpcLogFields, callLogFields(requestId, request));
    return next(request);
  };
}

/**
 * A call's log fields: its request id, its method and, when traced, its
 * server span's ids (the tracing interceptor runs first), so the runs it
 * starts log them too.
 */
function callLogFields(requestId: string, request: Parameters<typeof rpcMethodOf>[0] & { contextValues: ContextValues }): LogFields {
  return { request_id: requestId, rpc_method: rpcMethodOf(request), ...traceLogFields(traceContextOf(request.contextValues)) };
}

/** `package.Service/Method`, as logged. */
function rpcMethodOf(request: { service: { typeName: string }; method: { name: string } }): string {
  return `${request.service.typeName}/${request.method.name}`;
}

/** The caller's request id if it is one we may log, else a fresh one. */
export function requestIdOf(header: string | null): string {
  return header !== null && VALID_REQUEST_ID.test(header) ? header : randomUUID();
}

function logCompletion(logger: Logger, context: LogFields, signal: AbortSignal, durationMs: number, error: unknown): void {
  const fields = { ...context, duration_ms: Math.round(durationMs * 10) / 10 };
  if (error === undefined) {
    logger.debug?.("rpc completed", { ...fields, code: signal.aborted ? "Canceled" : "OK" });
    return;
  }
  const wire = ConnectError.from(error);
  const line = { ...fields, code: Code[wire.code] };
  if (isClientGone(error) || (signal.aborted && wire.code !== Code.DeadlineExceeded)) logger.debug?.("rpc cancelled by the client", line);
  else if (SERVER_FAULT.has(wire.code)) logger.error("rpc failed", line);
  else logger.warn("rpc failed", line);
}

/** Worker and run ids a request or response message names (a WorkerRef `worker`, a `run_id`, a Run `run`). */
function idsOf(message: unknown): Record<string, string> {
  const ids: Record<string, string> = {};
  const workerId =
    stringAt(message, "worker", "workerId") ??
    stringAt(message, "worker", "ref", "workerId") ??
    stringAt(message, "run", "worker", "workerId");
  const runId = stringAt(message, "runId") ?? stringAt(message, "run", "runId");
  if (workerId) ids["worker_id"] = bounded(workerId, MAX_LOGGED_ID_CHARS);
  if (runId) ids["run_id"] = bounded(runId, MAX_LOGGED_ID_CHARS);
  return ids;
}

function stringAt(value: unknown, ...path: string[]): string | undefined {
  let current = value;
  for (const key of path) {
    if (typeof current !== "object" || current === null) return undefined;
    current = Reflect.get(current, key);
  }
  return typeof current === "string" && current !== "" ? current : undefined;
}
