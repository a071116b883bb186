import { errorLogFields } from "./error-log-fields.js";
import type { Logger } from "./logger.js";

/** Where a background write's failure is logged, when it is worth a line of its own. */
export interface BackgroundFailureLog {
  logger: Logger;
  message: string;
  fields?: Record<string, unknown>;
}

/**
 * The writes the core starts and nobody waits for: the one way the core
 * fires and forgets. Their failures are not lost. Every store write of the
 * core reports its outcome to runtime health before its promise settles
 * (direct writes through WorkerJournal's `reported`, event writes through
 * the event stream's `onPersistResult`), which marks the runtime DEGRADED,
 * records a `store.write_failed` diagnostic and starts the probe. So here a
 * failure is only logged (when `log` is given) and never rethrown: there is
 * no caller left to throw to, and an unhandled rejection would end the
 * process.
 *
 * They are kept until settled, so that closing the runtime can wait for
 * them before it closes the store: a run's end, the worker's snapshot after
 * it and the runtime-wide events it causes were still being written when a
 * drained runtime closed its store, and the refused write marked the store
 * failing (a `serve` process then exited 1 after a clean SIGTERM drain).
 */
export class BackgroundWrites {
  private readonly pending = new Set<Promise<void>>();

  /** Starts tracking `write`; its failure is logged (if `log` is given), never thrown. */
  start(write: Promise<unknown>, log?: BackgroundFailureLog): void {
    const settled = write.then(
      () => undefined,
      (error: unknown) => log?.logger.error(log.message, { ...log.fields, ...errorLogFields(error) }),
    );
    this.pending.add(settled);
    void settled.then(() => this.pending.delete(settled));
  }

  /** Resolves once every write started, including any started meanwhile, has settled. */
  async settled(): Promise<void> {
    while (this.pending.size > 0) await Promise.all([...this.pending]);
  }
}
