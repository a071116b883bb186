import type { Logger } from "../runtime/index.js";

/** The signals that ask a server to drain and stop. */
const SHUTDOWN_SIGNALS: readonly NodeJS.Signals[] = ["SIGTERM", "SIGINT"];

/**
 * Calls `shutdown` on the first SIGTERM or SIGINT, and only then: a later
 * one is logged and ignored, and the handlers stay installed until the
 * process exits. A repeat is routine — `npm start` sends Ctrl-C's SIGINT on
 * to node, which the terminal has already sent it — and must neither start
 * the shutdown again nor, with no handler left, kill the process mid-drain
 * (Node's default action), which skipped the drain and the clean close.
 * The drain is bounded by the grace period and the close that follows;
 * SIGKILL is the way to stop at once.
 */
export function onShutdownSignal(logger: Logger, shutdown: (signal: NodeJS.Signals) => void): void {
  let first: NodeJS.Signals | undefined;
  const handle = (signal: NodeJS.Signals): void => {
    if (first === undefined) {
      first = signal;
      shutdown(signal);
      return;
    }
    logger.warn("already shutting down", { signal, first_signal: first });
  };
  for (const signal of SHUTDOWN_SIGNALS) process.on(signal, handle);
}
