import { StoreSequenceError } from "./store.js";

/**
 * Store health per write path (each log, each worker's run and snapshot
 * writes). A failure on one path must not be cleared by a success on
 * another — a full disk may fail one file and not the next — so the
 * runtime stays DEGRADED until every path that failed has written again.
 */
export class StoreHealth {
  private readonly failing = new Map<string, string>();

  /** Whether any write path is failing. */
  get degraded(): boolean {
    return this.failing.size > 0;
  }

  /**
   * Records one write outcome; returns "failed" or "recovered" when the
   * store as a whole changed state, else undefined. Sequence errors only
   * follow an earlier failure and say nothing new.
   */
  report(source: string, error: unknown): "failed" | "recovered" | undefined {
    if (error instanceof StoreSequenceError) return undefined;
    const wasDegraded = this.degraded;
    if (error === undefined) this.failing.delete(source);
    else if (!this.failing.has(source)) this.failing.set(source, error instanceof Error ? error.message : String(error));
    if (wasDegraded === this.degraded) return undefined;
    return this.degraded ? "failed" : "recovered";
  }

  /** Forgets every failure: a probe write succeeded, so the store can write again. */
  clear(): "recovered" | undefined {
    const wasDegraded = this.degraded;
    this.failing.clear();
    return wasDegraded ? "recovered" : undefined;
  }

  /** Forgets every path whose name starts with `prefix` (a deleted worker's). */
  forget(prefix: string): "recovered" | undefined {
    const wasDegraded = this.degraded;
    for (const source of [...this.failing.keys()]) if (source.startsWith(prefix)) this.failing.delete(source);
    return wasDegraded && !this.degraded ? "recovered" : undefined;
  }
}
