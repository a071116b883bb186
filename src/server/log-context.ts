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
 * A stream whose every step runs in `context`: a streaming handler's body
 * runs when the protocol layer pulls the next message, outside the
 * interceptor's scope.
 */
export async function* iterateWithLogContext<T>(context: LogContext, messages: AsyncIterable<T>): AsyncGenerator<T> {
  const iterator = messages[Symbol.asyncIterator]();
  try {
    for (;;) {
      const step = await storage.run(context, () => iterator.next());
      if (step.done) return;
      yield step.value;
    }
  } finally {
    await storage.run(context, async () => iterator.return?.());
  }
}
