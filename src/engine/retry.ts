/**
 * Backoff for provider retries: exponential with full jitter (so that many
 * workers hitting one rate limit spread out instead of retrying in step),
 * lengthened to the provider's own `Retry-After`, all inside a total budget.
 */
export interface RetryPolicy {
  /** Total time one model request may spend retrying, from its first attempt. */
  budgetMs: number;
  /** Backoff ceiling of the first retry. */
  baseDelayMs: number;
  /** Upper bound of any single backoff delay. */
  maxDelayMs: number;
}

/** Defaults: up to a minute of retrying, 0.5 s doubling to at most 20 s. */
export const DEFAULT_RETRY_POLICY: RetryPolicy = { budgetMs: 60_000, baseDelayMs: 500, maxDelayMs: 20_000 };

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
 * else `retry-after` as seconds or an HTTP date. Undefined when absent or
 * unparsable, so the caller falls back to backoff.
 */
export function retryAfterMs(headers: Headers | undefined, now: number = Date.now()): number | undefined {
  if (!headers) return undefined;
  const ms = headers.get("retry-after-ms");
  if (ms !== null && ms.trim() !== "") {
    const parsed = Number(ms);
    if (Number.isFinite(parsed) && parsed >= 0) return parsed;
  }
  const value = headers.get("retry-after");
  if (value === null || value.trim() === "") return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return seconds >= 0 ? seconds * 1000 : undefined;
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
