import { Code } from "@connectrpc/connect";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { RuntimeError } from "./errors.js";
import { ResponseBudget, surelyFits } from "./message-budget.js";

/**
 * One event as it travels to observers: encoded once, shared by every
 * subscriber. `event` is decoded lazily, only for consumers that need the
 * object (JSON clients, run filters).
 */
export interface StreamItem<E> {
  /** Durable sequence number, 0n for live deltas. */
  seq: bigint;
  /** The protobuf encoding of the whole event. */
  bytes: Uint8Array;
  /** The decoded event, when someone already has it. */
  event?: E;
  /** `bytes` with their varint length in front, filled by the first binary watch that sends it (wire-batch.ts). */
  lengthDelimited?: Uint8Array;
}

/** What a wait on a subscription ended with. */
export type SubscriptionWait<E> = { kind: "items"; items: StreamItem<E>[] } | { kind: "idle" } | { kind: "closed"; error?: RuntimeError };

/**
 * What one subscription may hold before it is ended: events, and their
 * encoded bytes (an event can carry a run's whole input, so a count alone
 * let one stalled watcher hold gigabytes).
 */
export interface BacklogBounds {
  maxItems: number;
  maxBytes: number;
}

/** Taken items kept at the queue's front before it is compacted (amortised O(1) per item). */
const COMPACT_AFTER = 1024;

/**
 * A bounded queue between one event stream and one observer. A slow
 * observer never blocks the run or other observers: events pile up here and
 * are handed over in batches (each fitting one message); past the backlog
 * bounds (events or bytes) the subscription is ended with
 * SUBSCRIBER_TOO_SLOW so the client resumes from its cursor.
 */
export class Subscription<E> {
  /**
   * Items not yet taken start at `head`: taking a batch only moves `head`
   * (and compacts now and then), so a deep backlog is not copied on every
   * batch.
   */
  private queue: StreamItem<E>[] = [];
  private head = 0;
  /** Encoded bytes of the items not yet taken. */
  private queuedBytes = 0;
  private readonly maxItems: number;
  private readonly maxBytes: number;
  private wake: (() => void) | undefined;
  private closedWith: { error?: RuntimeError } | undefined;
  private idleTimer: NodeJS.Timeout | undefined;
  private idleTimerMs = 0;
  private signal: AbortSignal | undefined;
  /** Whether `signal` has aborted: kept here so a wait does not read the signal (a megamorphic load) each time. */
  private signalAborted = false;
  private readonly onAbort = (): void => {
    this.signalAborted = true;
    this.wakeUp();
  };

  constructor(
    bounds: BacklogBounds,
    private readonly onClose: (subscription: Subscription<E>) => void,
  ) {
    this.maxItems = bounds.maxItems;
    this.maxBytes = bounds.maxBytes;
  }

  /** Whether the subscription has ended. */
  get closed(): boolean {
    return this.closedWith !== undefined;
  }

  /**
   * Called by the stream for every delivered item. An item that would take
   * the backlog past a bound ends the subscription instead; a lone item is
   * always taken, so a watcher keeping up is never ended by one large event.
   */
  push(item: StreamItem<E>): void {
    if (this.closedWith) return;
    const queued = this.queue.length - this.head;
    const bytes = item.bytes.byteLength;
    if (queued >= this.maxItems) {
      this.close(tooSlow({ max_backlog: String(this.maxItems) }));
      return;
    }
    if (queued > 0 && this.queuedBytes + bytes > this.maxBytes) {
      this.close(tooSlow({ max_backlog_bytes: String(this.maxBytes) }));
      return;
    }
    this.queue.push(item);
    this.queuedBytes += bytes;
    this.wakeUp();
  }

  /**
   * Waits for items and takes up to `maxItems` of them at once, as many as
   * fit `maxBytes` as elements of a repeated field (message-budget.ts's
   * ResponseBudget: batching under load, a lone item at once). Resolves
   * "idle" after `idleMs` without items, and "closed" when the subscription
   * or `signal` ends. An item no message can carry (one past `maxBytes`
   * alone) is refused with ResponseBudget's RESOURCE_EXHAUSTED /
   * LIMIT_EXCEEDED rather than handed over: every batch taken fits one message.
   */
  async next(maxItems: number, maxBytes: number, idleMs: number, signal: AbortSignal): Promise<SubscriptionWait<E>> {
    await this.wait(idleMs, signal);
    return this.poll(maxItems, maxBytes, signal);
  }

  /**
   * Resolves when there is something to {@link poll} (items, the end, or
   * `idleMs` without items), or returns undefined when there is already.
   * Split from `poll` so a paced watch (one wait per item) pays one promise
   * per wait: the idle timer is one per subscription, re-armed (`refresh`)
   * rather than created each time, and the signal is listened to once, for
   * the subscription's life, not once per wait.
   */
  wait(idleMs: number, signal: AbortSignal): Promise<void> | undefined {
    if (this.queue.length > this.head || this.closedWith) return undefined;
    if (signal === this.signal ? this.signalAborted : signal.aborted) return undefined;
    this.watchSignal(signal);
    return new Promise<void>((resolve) => {
      this.wake = resolve;
      this.armIdleTimer(idleMs);
    });
  }

  /**
   * What there is now: up to `maxItems` items fitting `maxBytes` (see
   * {@link next}), the end, or "idle" when there is neither. Cut by bytes
   * so that what a stalled writer holds outside the backlog is one
   * message, not a batch of hundreds of large events.
   */
  poll(maxItems: number, maxBytes: number, signal: AbortSignal): SubscriptionWait<E> {
    if (this.queue.length > this.head) return { kind: "items", items: this.take(maxItems, maxBytes) };
    if (this.closedWith) return { kind: "closed", ...this.closedWith };
    if (signal.aborted) return { kind: "closed" };
    return { kind: "idle" };
  }

  /**
   * Ends the subscription and releases it from its stream. Idempotent. An
   * error drops what is queued and is handed over at once: a watcher too
   * slow for its backlog (SUBSCRIBER_TOO_SLOW) resumes from its cursor and
   * reads the dropped events again.
   */
  close(error?: RuntimeError): void {
    this.end(error, true);
  }

  /**
   * Ends the subscription with `error` once the items it holds have been
   * taken: a deleted worker's watcher gets the last events (its run's end,
   * the worker STOPPED) and then the reason, since nothing can be read
   * again from a worker that is gone.
   */
  closeAfterQueued(error: RuntimeError): void {
    this.end(error, false);
  }

  private end(error: RuntimeError | undefined, dropQueued: boolean): void {
    if (this.closedWith) return;
    this.closedWith = error ? { error } : {};
    if (error && dropQueued) this.clearQueue();
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.unwatchSignal();
    this.onClose(this);
    this.wakeUp();
  }

  /** Takes up to `maxItems` queued items fitting `maxBytes` (at least one), oldest first. */
  private take(maxItems: number, maxBytes: number): StreamItem<E>[] {
    const queue = this.queue;
    if (this.head === 0 && queue.length <= maxItems && surelyFits(queue.length, this.queuedBytes, maxBytes)) {
      this.clearQueue();
      return queue;
    }
    const last = Math.min(queue.length, this.head + maxItems);
    const budget = new ResponseBudget(maxBytes);
    let end = this.head;
    let takenBytes = 0;
    for (; end < last; end++) {
      const bytes = (queue[end] as StreamItem<E>).bytes.byteLength;
      if (!budget.take(bytes)) break;
      takenBytes += bytes;
    }
    const items = queue.slice(this.head, end);
    this.head = end;
    this.queuedBytes -= takenBytes;
    if (this.head === this.queue.length) this.clearQueue();
    else if (this.head >= COMPACT_AFTER && this.head * 2 >= this.queue.length) {
      this.queue = this.queue.slice(this.head);
      this.head = 0;
    }
    return items;
  }

  private clearQueue(): void {
    this.queue = [];
    this.head = 0;
    this.queuedBytes = 0;
  }

  private wakeUp(): void {
    const wake = this.wake;
    this.wake = undefined;
    wake?.();
  }

  /** Wakes the waiter after `idleMs` (one timer, re-armed per wait). */
  private armIdleTimer(idleMs: number): void {
    if (this.idleTimer && this.idleTimerMs === idleMs) {
      this.idleTimer.refresh();
      return;
    }
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimerMs = idleMs;
    this.idleTimer = setTimeout(() => this.wakeUp(), idleMs);
  }

  /** Wakes the waiter when `signal` aborts; listened to once per signal. */
  private watchSignal(signal: AbortSignal): void {
    if (this.signal === signal) return;
    this.unwatchSignal();
    this.signal = signal;
    this.signalAborted = false;
    signal.addEventListener("abort", this.onAbort, { once: true });
  }

  private unwatchSignal(): void {
    this.signal?.removeEventListener("abort", this.onAbort);
    this.signal = undefined;
  }
}

/** SUBSCRIBER_TOO_SLOW, with the bound that was passed in `metadata`. */
function tooSlow(metadata: Record<string, string>): RuntimeError {
  return new RuntimeError(
    Code.ResourceExhausted,
    ErrorReason.SUBSCRIBER_TOO_SLOW,
    "watch fell too far behind; resume from the last cursor",
    metadata,
  );
}
