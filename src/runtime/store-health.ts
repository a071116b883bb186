import { StoreSequenceError } from "./store.js";

/**
 * Store health per write path (each log, each worker's run and snapshot
 * writes). A failure on one path must not be cleared by a success on
 * another — a full disk may fail one file and not the next — so the
 * runtime stays DEGRADED until every path that failed has written again.
 */
export class StoreHealth {
  private readonly failing = new Map<string, string>();
  /** Store calls that have not answered within their bound, until they answer (a probe write does not clear them). */
  private readonly unanswered = new Set<string>();

  /** Whether any write path is failing or any store call has not answered. */
  get degraded(): boolean {
    return this.failing.size > 0 || this.unanswered.size > 0;
  }

  /** Whether a store call on `source` is recorded as unanswered. */
  isWaiting(source: string): boolean {
    return this.unanswered.has(source);
  }

  /** Records that a store call on `source` has (or has no longer) gone unanswered past its bound. */
  waiting(source: string, unanswered: boolean): "failed" | "recovered" | undefined {
    const wasDegraded = this.degraded;
    if (unanswered) this.unanswered.add(source);
    else this.unanswered.delete(source);
    if (wasDegraded === this.degraded) return undefined;
    return this.degraded ? "failed" : "recovered";
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

  /** Forgets every failure: a probe write succeeded, so the store can write again (a call still unanswered stays). */
  clear(): "recovered" | undefined {
    const wasDegraded = this.degraded;
    this.failing.clear();
    return wasDegraded && !this.degraded ? "recovered" : undefined;
  }

  /** Forgets every path whose name starts with `prefix` (a deleted worker's). */
  forget(prefix: string): "recovered" | undefined {
    const wasDegraded = this.degraded;
    for (const source of [...this.failing.keys()]) if (source.startsWith(prefix)) this.failing.delete(source);
    for (const source of [...this.unanswered]) if (source.startsWith(prefix)) this.unanswered.delete(source);
    return wasDegraded && !this.degraded ? "recovered" : undefined;
  }
}

/** What common system error codes mean, for diagnostics an operator reads. */
const CODE_MEANINGS: Record<string, string> = {
  ENOSPC: "no space left on device",
  EDQUOT: "disk quota exceeded",
  EROFS: "read-only file system",
  EIO: "I/O error",
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  EMFILE: "too many open files",
};

/**
 * Says why a store write failed, by the system error code found on the
 * error or its causes (e.g. "ENOSPC: no space left on device"). Only the
 * code is used: system error messages name host paths, which must not
 * reach clients.
 */
export function describeStoreFailure(error: unknown): string {
  for (let current: unknown = error, depth = 0; current instanceof Error && depth < 5; current = current.cause, depth++) {
    const code = "code" in current ? current.code : undefined;
    if (typeof code === "string" && /^E[A-Z0-9]+$/.test(code)) {
      const meaning = CODE_MEANINGS[code];
      return meaning ? `${code}: ${meaning}` : code;
    }
  }
  return "disk full or I/O error";
}
