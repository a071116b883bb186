import { CloseTimeoutError, errorLogFields, type Logger, type Runtime } from "../runtime/index.js";

/**
 * How a server's shutdown ended; how the process ends follows it (main.ts):
 * "clean" exits 0, "failed" exits 1, and "unsettled" (store writes still
 * pending past --shutdown-flush-ms, a hung disk) is killed with SIGKILL,
 * because Node's own exit waits for its I/O threads, one of which the hung
 * write holds, and so would never end.
 */
export type ShutdownOutcome = "clean" | "failed" | "unsettled";

/** What {@link closeForShutdown} closes: the server (drain, runtime, store), then anything beside it. */
export interface ShutdownParts {
  server: { close(graceMs?: number, cut?: AbortSignal): Promise<void> };
  runtime: Pick<Runtime, "stats">;
  /** Closed after the server, whatever its outcome (the metrics listener, the Backend's service). */
  after?: () => Promise<void> | void;
  logger: Logger;
}

/**
 * Closes a `serve` or `backend` process's server and says whether the
 * drain was clean. A close that threw, or a store that was failing writes
 * when it closed (so what the drain recorded, e.g. the runs it interrupted,
 * may not be on disk), is "failed" and logged with why: the process then
 * exits non-zero, so a supervisor never reads a lossy drain as a clean one.
 * A close that passed its bound (the runtime's CloseTimeoutError, which
 * the runtime has logged with the writes that did not settle) is "unsettled".
 */
export async function closeForShutdown(parts: ShutdownParts, graceMs: number, cut: AbortSignal): Promise<ShutdownOutcome> {
  const { server, runtime, after, logger } = parts;
  let outcome: ShutdownOutcome = "clean";
  try {
    await server.close(graceMs, cut);
    if (runtime.stats().storeWritesFailing) {
      outcome = "failed";
      logger.error("shutdown failed", {
        reason: "store writes were failing when the store closed: what the drain recorded may be missing on disk",
      });
    }
  } catch (error) {
    outcome = error instanceof CloseTimeoutError ? "unsettled" : "failed";
    logger.error("shutdown failed", errorLogFields(error));
  }
  try {
    await after?.();
  } catch (error) {
    if (outcome === "clean") outcome = "failed";
    logger.error("shutdown failed", errorLogFields(error));
  }
  return outcome;
}

/** The last line a `serve` or `backend` process logs, saying how it ends (see {@link ShutdownOutcome}). */
export function logStopped(logger: Logger, outcome: ShutdownOutcome): void {
  if (outcome === "clean") logger.info("stopped");
  else if (outcome === "failed") logger.error("stopped after a failed shutdown; exiting 1");
  else
    logger.error(
      "stopped with store writes unsettled (see above): they may not be on disk; ending with SIGKILL, as exiting would wait for them",
    );
}
