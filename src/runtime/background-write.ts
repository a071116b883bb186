import { errorLogFields } from "./error-log-fields.js";
import type { Logger } from "./logger.js";

/** Where a background write's failure is logged, when it is worth a line of its own. */
export interface BackgroundFailureLog {
  logger: Logger;
  message: string;
  fields?: Record<string, unknown>;
}

/**
 * Starts a write that nobody waits for: the one way the core fires and
 * forgets. Its failure is not lost. Every store write of the core reports
 * its outcome to runtime health before its promise settles (direct writes
 * through WorkerJournal's `reported`, event writes through the event
 * stream's `onPersistResult`), which marks the runtime DEGRADED, records a
 * `store.write_failed` diagnostic and starts the probe. So here the failure
 * is only logged (when `log` is given) and never rethrown: there is no
 * caller left to throw to, and an unhandled rejection would end the process.
 */
export function inBackground(write: Promise<unknown>, log?: BackgroundFailureLog): void {
  write.catch((error: unknown) => log?.logger.error(log.message, { ...log.fields, ...errorLogFields(error) }));
}
