import type { Logger } from "../runtime/index.js";

/** The signals that ask a server to drain and stop. */
const SHUTDOWN_SIGNALS: readonly NodeJS.Signals[] = ["SIGTERM", "SIGINT"];

/**
 * A repeat this soon after the first signal is the same Ctrl-C delivered
 * twice (the terminal sends SIGINT to node, and `npm start` passes its own
 * copy on), not an operator asking again.
 */
export const REPEAT_WINDOW_MS = 1_000;

/**
 * Calls `shutdown` on the first SIGTERM or SIGINT, and only then; the
 * handlers stay installed until the process exits, so a repeat never meets
 * Node's default action (which killed the process mid-drain, skipping the
 * interrupted runs' records and the clean close). A repeat within
 * {@link REPEAT_WINDOW_MS} is the duplicate above, logged and ignored; a
 * later one is the operator asking again, and aborts the `cut` signal
 * handed to `shutdown`: runs still going are interrupted now instead of at
 * the end of the grace, and the close goes on cleanly. SIGKILL stops at once.
 */
export function onShutdownSignal(logger: Logger, shutdown: (signal: NodeJS.Signals, cut: AbortSignal) => void): void {
  let first: { signal: NodeJS.Signals; at: number } | undefined;
  const cut = new AbortController();
  const handle = (signal: NodeJS.Signals): void => {
    if (first === undefined) {
      first = { signal, at: performance.now() };
      shutdown(signal, cut.signal);
      return;
    }
    if (performance.now() - first.at < REPEAT_WINDOW_MS || cut.signal.aborted) {
      logger.warn("already shutting down", { signal, first_signal: first.signal });
      return;
    }
    logger.warn("asked again: interrupting runs now instead of waiting out the grace", { signal, first_signal: first.signal });
    cut.abort();
  };
  for (const signal of SHUTDOWN_SIGNALS) process.on(signal, handle);
}
