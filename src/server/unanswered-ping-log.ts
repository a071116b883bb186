import type { Logger } from "../runtime/index.js";

/** How long one aggregate of unanswered-ping reaps covers. */
export const UNANSWERED_PING_WINDOW_MS = 60_000;

/** The bounded log of connections closed for an unanswered ping ({@link createUnansweredPingLog}). */
export interface UnansweredPingLog {
  /** One connection closed for an unanswered ping, with its peer. */
  reaped(fields: Record<string, unknown>): void;
  /**
   * Writes the open window's count now, rather than at its end: at
   * shutdown, when the process would exit before the window's timer fires
   * and those reaps would be missing from the log.
   */
  flush(): void;
}

/**
 * The log of connections closed for an unanswered ping, bounded: anyone can
 * open idle TCP connections without a token, and one warn line each let
 * 2,000 sockets write 2,000 lines. Each reap is a debug line with its peer;
 * the first of a window is also a warn (an operator sees the first at once),
 * and the rest of the window are one warn with their count when it ends
 * (or when the server shuts down: {@link UnansweredPingLog.flush}).
 */
export function createUnansweredPingLog(logger: Logger, windowMs = UNANSWERED_PING_WINDOW_MS): UnansweredPingLog {
  let window: NodeJS.Timeout | undefined;
  let more = 0;
  const endWindow = (): void => {
    clearTimeout(window);
    if (more > 0) logger.warn("closed more HTTP/2 connections whose peers did not answer a ping", { count: more, window_ms: windowMs });
    window = undefined;
    more = 0;
  };
  return {
    reaped(fields) {
      logger.debug?.("closing an HTTP/2 connection whose peer did not answer a ping", fields);
      if (window !== undefined) {
        more += 1;
        return;
      }
      logger.warn("closing an HTTP/2 connection whose peer did not answer a ping", fields);
      window = setTimeout(endWindow, windowMs);
      window.unref();
    },
    flush: endWindow,
  };
}
