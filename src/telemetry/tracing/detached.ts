import { context, ROOT_CONTEXT } from "@opentelemetry/api";

/**
 * Runs `start` outside any trace. Background work that a request sets off
 * but does not own — a connection loop, a long-lived upstream watch — would
 * otherwise inherit the request's context through AsyncLocalStorage, and
 * every reconnect for the rest of the process would show up as a child of
 * that one request.
 */
export function detached<T>(start: () => T): T {
  return context.with(ROOT_CONTEXT, start);
}
