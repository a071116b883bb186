import { Code } from "@connectrpc/connect";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { errorLogFields } from "./error-log-fields.js";
import { RuntimeError } from "./errors.js";
import type { Logger } from "./logger.js";

/** Where a background write's failure is logged, when it is worth a line of its own. */
export interface BackgroundFailureLog {
  logger: Logger;
  message: string;
  fields?: Record<string, unknown>;
}

/**
 * What closing the runtime waits for before it closes the store: the writes
 * the core starts and nobody waits for (the one way the core fires and
 * forgets), and the requests that write (StopWorker, CancelRun, ...).
 *
 * A background write's failure is not lost. Every store write of the
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
 * A request is kept the same way, and once close has begun a new one is
 * refused (RUNTIME_DRAINING) before it writes anything: the server serves
 * its connections until the runtime has closed, and a StopWorker arriving
 * as the store closed had its write refused, was told STORE_UNAVAILABLE and
 * marked the store failing, so that drain too exited 1.
 */
export class BackgroundWrites {
  private readonly pending = new Set<Promise<void>>();
  private closing = false;

  /**
   * `onRequestSettled` hears how a request ended before its caller does
   * (`undefined`: it succeeded): a request refused because its write failed
   * is the store failing, and health must say so by the time the refusal is
   * answered; a later one that succeeds says writes go through again (not
   * every store has a write probe to find that out).
   */
  constructor(private readonly onRequestSettled: (error: unknown) => void = () => {}) {}

  /** Starts tracking `write`; its failure is logged (if `log` is given), never thrown. */
  start(write: Promise<unknown>, log?: BackgroundFailureLog): void {
    const settled = write.then(
      () => undefined,
      (error: unknown) => {
        // A logger that throws (a broken destination) must not turn the write into an unhandled rejection.
        try {
          log?.logger.error(log.message, { ...log.fields, ...errorLogFields(error) });
        } catch {}
      },
    );
    this.pending.add(settled);
    void settled.then(() => this.pending.delete(settled));
  }

  /** Runs a request that may write, tracked until it settles; refused once {@link close} was called. */
  async request<T>(run: () => Promise<T>): Promise<T> {
    if (this.closing)
      throw new RuntimeError(Code.Unavailable, ErrorReason.RUNTIME_DRAINING, "the runtime is closing and takes no requests");
    const result = run().then(
      (value) => {
        this.onRequestSettled(undefined);
        return value;
      },
      (error: unknown) => {
        this.onRequestSettled(error);
        throw error;
      },
    );
    this.start(result);
    return result;
  }

  /** Refuses requests from now on (the runtime is closing); what is in flight still settles. */
  close(): void {
    this.closing = true;
  }

  /** Resolves once every write and request started, including any started meanwhile, has settled. */
  async settled(): Promise<void> {
    while (this.pending.size > 0) await Promise.all([...this.pending]);
  }
}
