/**
 * Backoff for provider retries: exponential with full jitter (so that many
 * workers hitting one rate limit spread out instead of retrying in step),
 * lengthened to the provider's own `Retry-After`, all inside a total budget.
 */
export interface RetryPolicy {
  /**
   * Total time one run may spend retrying: every failed attempt's duration
   * plus every backoff wait, over all of the run's model requests.
   */
  budgetMs: number;
  /** Backoff ceiling of the first retry. */
  baseDelayMs: number;
  /** Upper bound of any single backoff delay. */
  maxDelayMs: number;
}

/** Defaults: up to a minute of retrying, 0.5 s doubling to at most 20 s. */
export const DEFAULT_RETRY_POLICY: RetryPolicy = { budgetMs: 60_000, baseDelayMs: 500, maxDelayMs: 20_000 };

/**
 * One run's retry budget. It is per run, not per request: a provider that is
 * down fails a run after `budgetMs` of retrying in total, however many turns
 * and stream resumes the run takes. Successful requests spend nothing.
 */
export class RetryBudget {
  private spentMs = 0;
  /** Retries scheduled so far in the run. */
  retries = 0;

  constructor(readonly totalMs: number) {}

  /** What is left, in milliseconds (never negative). */
  get remainingMs(): number {
    return Math.max(0, this.totalMs - this.spentMs);
  }

  /** Counts time spent on a failed attempt or a backoff wait. */
  spend(ms: number): void {
    this.spentMs += Math.max(0, ms);
  }
}

/** Full-jitter delay before retry number `attempt` (0-based). */
export function backoffDelayMs(attempt: number, policy: RetryPolicy, random: () => number): number {
  const ceiling = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** attempt);
  return Math.floor(random() * ceiling);
}

/**
 * The delay before retry number `attempt`: the provider's delay when it asked
 * for one, but never less than the backoff (nor the base delay), so that a
 * provider answering `Retry-After: 0` to every request does not get a
 * storm of immediate retries for the whole budget.
 */
export function retryDelayMs(attempt: number, providerDelayMs: number | undefined, policy: RetryPolicy, random: () => number): number {
  const backoff = backoffDelayMs(attempt, policy, random);
  if (providerDelayMs === undefined) return backoff;
  return Math.max(providerDelayMs, backoff, policy.baseDelayMs);
}

/**
 * The delay a provider asked for: `retry-after-ms` (OpenAI's extension),
 * else `retry-after` as seconds or an HTTP date, in whole milliseconds
 * rounded up (a retry's delay is a uint32 in ProviderRetry: a fraction made
 * its event unencodable and failed the run INTERNAL). Undefined when absent
 * or unparsable, so the caller falls back to backoff.
 */
export function retryAfterMs(headers: Headers | undefined, now: number = Date.now()): number | undefined {
  if (!headers) return undefined;
  const ms = headers.get("retry-after-ms");
  if (ms !== null && ms.trim() !== "") {
    const parsed = Number(ms);
    if (Number.isFinite(parsed) && parsed >= 0) return Math.ceil(parsed);
  }
  const value = headers.get("retry-after");
  if (value === null || value.trim() === "") return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return seconds >= 0 ? Math.ceil(seconds * 1000) : undefined;
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

/** Sleeps, rejecting with the signal's reason as soon as it aborts. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
