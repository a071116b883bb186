import { context, ROOT_CONTEXT } from "@opentelemetry/api";

/**
 * Runs `start` outside any trace. Background work that a request sets off
 * but does not own — a connection loop, a long-lived upstream watch — must
 * not belong to that request's trace, or every reconnect for the rest of
 * the process would show up as a child of that one request. This process
 * installs no context manager, so nothing is inherited implicitly; for an
 * embedder that installs one (AsyncLocalStorage), this cuts the request's
 * context off.
 */
export function detached<T>(start: () => T): T {
  return context.with(ROOT_CONTEXT, start);
}
