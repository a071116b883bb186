import { AsyncLocalStorage } from "node:async_hooks";

/**
 * The fields every log line written while serving one RPC carries (request
 * id, method, worker and run ids). Kept in an AsyncLocalStorage by the RPC
 * logging interceptor, so the core's log calls, which know nothing of
 * requests, still land with their request's ids; a run started by an RPC
 * keeps that RPC's request id, since its promises are created inside it.
 */
export type LogContext = Readonly<Record<string, string>>;

const storage = new AsyncLocalStorage<LogContext>();

/** The current request's log fields, or undefined outside any RPC. A logger's per-line hook reads this. */
export function currentLogContext(): LogContext | undefined {
  return storage.getStore();
}

/** Runs `fn` with `context` as the current log context. */
export function runWithLogContext<T>(context: LogContext, fn: () => T): T {
  return storage.run(context, fn);
}

/**
 * Runs `fn` outside any request's log context: for background work a
 * request merely starts (a Backend's connection to a runtime it was told to
 * add), which must not carry that request's id for the rest of its life.
 */
export function withoutLogContext<T>(fn: () => T): T {
  return storage.exit(fn);
}

/**
 * `messages` with every step run in `context` (a streaming handler's body
 * runs when the protocol layer pulls the next message, outside the
 * interceptor's scope), calling `onEnd` once when the stream ends, fails or
 * is closed early. A plain iterator rather than an async generator: one
 * promise per message instead of a generator's several, since watches
 * stream many.
 */
export function streamWithLogContext<T>(
  context: LogContext,
  messages: AsyncIterable<T>,
  onEnd: (error: unknown) => void,
): AsyncIterable<T> {
  return {
    [Symbol.asyncIterator](): AsyncIterator<T> {
      const iterator = storage.run(context, () => messages[Symbol.asyncIterator]());
      let ended = false;
      const end = (error: unknown): void => {
        if (ended) return;
        ended = true;
        storage.run(context, () => onEnd(error));
      };
      return {
        next: () =>
          storage
            .run(context, () => iterator.next())
            .then(
              (step) => {
                if (step.done) end(undefined);
                return step;
              },
              (error: unknown) => {
                end(error);
                throw error;
              },
            ),
        return: async (value?: unknown) => {
          try {
            return (await storage.run(context, () => iterator.return?.(value))) ?? { done: true, value: undefined };
          } finally {
            end(undefined);
          }
        },
      };
    },
  };
}
