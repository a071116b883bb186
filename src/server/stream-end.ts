/**
 * `messages`, calling `onEnd` once when the stream ends, fails or is closed
 * early (the logging interceptor logs a stream's completion then). Watches
 * stream tens of thousands of messages a second through this, so a step
 * costs one promise: the inner `next()`'s, with the end check attached by
 * one `.then` (an async generator would cost several).
 */
export function onStreamEnd<T>(messages: AsyncIterable<T>, onEnd: (error: unknown) => void): AsyncIterable<T> {
  return {
    [Symbol.asyncIterator](): AsyncIterator<T> {
      const iterator = messages[Symbol.asyncIterator]();
      let ended = false;
      const end = (error: unknown): void => {
        if (ended) return;
        ended = true;
        onEnd(error);
      };
      const stepped = (step: IteratorResult<T>): IteratorResult<T> => {
        if (step.done) end(undefined);
        return step;
      };
      const failed = (error: unknown): never => {
        end(error);
        throw error;
      };
      return {
        next: () => iterator.next().then(stepped, failed),
        return: async (value?: unknown) => {
          try {
            return (await iterator.return?.(value)) ?? { done: true, value: undefined };
          } finally {
            end(undefined);
          }
        },
      };
    },
  };
}
