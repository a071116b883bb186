import { ConnectionBackoff, type ConnectionBackoffOptions } from "./backoff.js";

/** How long a relayed stream must stay open to count as healthy without delivering an event. */
export const STREAM_PROVEN_MS = 10_000;

/**
 * Longest wait between re-opens unless configured: the connection's 120 s
 * cap would leave the relay's clients without live events for up to two
 * minutes after a Runtime's store writes again (nothing else wakes it:
 * the connection stays READY through a store outage).
 */
export const STREAM_RETRY_MAX_MS = 10_000;

/**
 * The backoff between re-opens of a relayed upstream stream, reset only
 * once a stream proves healthy: it delivered a real event, or stayed open
 * {@link STREAM_PROVEN_MS}. A Runtime sends a snapshot or heartbeat at once
 * on every open, so resetting on the first message (as the relays did) kept
 * a Runtime that opens then fails at once (its store unavailable during an
 * outage) retried at the initial delay for the whole outage; now it is
 * retried with growing backoff up to the cap ({@link STREAM_RETRY_MAX_MS}
 * unless the options set one).
 */
export class StreamRetry {
  private readonly backoff: ConnectionBackoff;
  private openedAt = Number.POSITIVE_INFINITY;

  constructor(options: ConnectionBackoffOptions = {}) {
    this.backoff = new ConnectionBackoff({ maxMs: STREAM_RETRY_MAX_MS, ...options });
  }

  /** A stream is being opened now. */
  opened(): void {
    this.openedAt = performance.now();
  }

  /** The stream delivered a real event: it is healthy. */
  proved(): void {
    this.backoff.reset();
  }

  /** The delay before the next open, after the stream ended or failed (reset first if it stayed open long enough). */
  next(): number {
    if (performance.now() - this.openedAt >= STREAM_PROVEN_MS) this.backoff.reset();
    this.openedAt = Number.POSITIVE_INFINITY;
    return this.backoff.next();
  }
}
