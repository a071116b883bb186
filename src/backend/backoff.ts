/** Options for {@link ConnectionBackoff}; the defaults are gRPC's connection backoff. */
export interface ConnectionBackoffOptions {
  /** First delay (default 1 s). */
  initialMs?: number;
  /** Growth per failure (default 1.6). */
  multiplier?: number;
  /** Relative jitter either way (default 0.2 = ±20 %). */
  jitter?: number;
  /** Largest delay (default 120 s). */
  maxMs?: number;
  /** Source of randomness in [0, 1) (tests pin it). */
  random?: () => number;
}

/**
 * The standard gRPC connection backoff (grpc/doc/connection-backoff.md):
 * 1 s, then ×1.6 per failure up to 120 s, each delay jittered by ±20 % so
 * that many Backends do not retry a restarted Runtime in lockstep. A
 * success resets it.
 */
export class ConnectionBackoff {
  private readonly initialMs: number;
  private readonly multiplier: number;
  private readonly jitter: number;
  private readonly maxMs: number;
  private readonly random: () => number;
  private currentMs: number;

  constructor(options: ConnectionBackoffOptions = {}) {
    this.initialMs = options.initialMs ?? 1_000;
    this.multiplier = options.multiplier ?? 1.6;
    this.jitter = options.jitter ?? 0.2;
    this.maxMs = options.maxMs ?? 120_000;
    this.random = options.random ?? Math.random;
    this.currentMs = this.initialMs;
  }

  /** The delay before the next attempt; each call grows the one after it. */
  next(): number {
    const base = this.currentMs;
    this.currentMs = Math.min(this.maxMs, this.currentMs * this.multiplier);
    const factor = 1 + this.jitter * (this.random() * 2 - 1);
    return Math.round(base * factor);
  }

  /** After a success: the next failure waits the initial delay again. */
  reset(): void {
    this.currentMs = this.initialMs;
  }
}

/** Waits `ms`, or less if `signal` aborts first; never rejects, so a loop checks the signal itself. */
export function sleepUnlessAborted(ms: number, signal: AbortSignal): Promise<void> {
  // An aborted signal never fires "abort" again: without this the full delay would pass, its timer armed.
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done);
  });
}
