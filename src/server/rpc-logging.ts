import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { randomUUID } from "node:crypto";
import { bounded, type Logger } from "../runtime/index.js";
import { isClientGone } from "./error-mapping.js";
import { type LogContext, runWithLogContext, streamWithLogContext } from "./log-context.js";

/** The header a request id travels in, both ways. */
export const REQUEST_ID_HEADER = "x-request-id";

/** A caller's request id is kept if it is 1-128 of these characters (no spaces, no control bytes, nothing to forge log lines with). */
const VALID_REQUEST_ID = /^[A-Za-z0-9._:/+=-]{1,128}$/;

/**
 * The longest worker or run id copied from a message into the log context.
 * They come from the caller, before authentication and validation, and go on
 * every line of the call: a 4 MiB "id" must not become 4 MiB log lines.
 */
const MAX_LOGGED_ID_CHARS = 128;

/** Codes that mean the server, not the caller, failed. */
const SERVER_FAULT = new Set([Code.Internal, Code.Unknown, Code.DataLoss]);

/**
 * Sets up each RPC's log context — its request id (the caller's valid
 * `x-request-id`, else a new one, echoed in the response headers or error
 * metadata), method, and the worker and run ids its request names — and
 * logs its completion: debug when it succeeds or the client cancelled it,
 * warn for an error the caller caused, error for one the server did. Never
 * logs a request or response message: those carry model text and tool
 * payloads.
 */
export function createLoggingInterceptor(logger: Logger): Interceptor {
  return (next) => async (request) => {
    const requestId = requestIdOf(request.header.get(REQUEST_ID_HEADER));
    const context: Record<string, string> = { request_id: requestId, rpc_method: `${request.service.typeName}/${request.method.name}` };
    if (!request.stream) Object.assign(context, idsOf(request.message));
    const started = performance.now();
    const done = (error: unknown): void => logCompletion(logger, context, request.signal, performance.now() - started, error);
    try {
      const response = await runWithLogContext(context, () => next(request));
      response.header.set(REQUEST_ID_HEADER, requestId);
      if (!response.stream) {
        const ids = idsOf(response.message);
        runWithLogContext({ ...ids, ...context }, () => done(undefined));
        return response;
      }
      return {
        ...response,
        message: streamWithLogContext(context, response.message, done),
      };
    } catch (error) {
      if (error instanceof ConnectError) error.metadata.set(REQUEST_ID_HEADER, requestId);
      runWithLogContext(context, () => done(error));
      throw error;
    }
  };
}

/** The caller's request id if it is one we may log, else a fresh one. */
export function requestIdOf(header: string | null): string {
  return header !== null && VALID_REQUEST_ID.test(header) ? header : randomUUID();
}

function logCompletion(logger: Logger, context: LogContext, signal: AbortSignal, durationMs: number, error: unknown): void {
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
