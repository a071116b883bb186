import { errorLogFields, type Logger, type Runtime } from "../runtime/index.js";

/** How a server's shutdown ended; the process's exit code follows it (main.ts: 0 or 1). */
export type ShutdownOutcome = "clean" | "failed";

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
    outcome = "failed";
    logger.error("shutdown failed", errorLogFields(error));
  }
  try {
    await after?.();
  } catch (error) {
    outcome = "failed";
    logger.error("shutdown failed", errorLogFields(error));
  }
  return outcome;
}
