import { Code } from "@connectrpc/connect";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { RuntimeError } from "./errors.js";

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

/** Taken items kept at the queue's front before it is compacted (amortised O(1) per item). */
const COMPACT_AFTER = 1024;

/**
 * A bounded queue between one event stream and one observer. A slow
 * observer never blocks the run or other observers: events pile up here and
 * are handed over in batches; past the backlog bound the subscription is
 * ended with SUBSCRIBER_TOO_SLOW so the client resumes from its cursor.
 */
export class Subscription<E> {
  /**
   * Items not yet taken start at `head`: taking a batch only moves `head`
   * (and compacts now and then), so a deep backlog is not copied on every
   * batch.
   */
  private queue: StreamItem<E>[] = [];
  private head = 0;
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
    private readonly maxBacklog: number,
    private readonly onClose: (subscription: Subscription<E>) => void,
  ) {}

  /** Whether the subscription has ended. */
  get closed(): boolean {
    return this.closedWith !== undefined;
  }

  /** Called by the stream for every delivered item. */
  push(item: StreamItem<E>): void {
    if (this.closedWith) return;
    if (this.queue.length - this.head >= this.maxBacklog) {
      this.close(
        new RuntimeError(
          Code.ResourceExhausted,
          ErrorReason.SUBSCRIBER_TOO_SLOW,
          "watch fell too far behind; resume from the last cursor",
          { max_backlog: String(this.maxBacklog) },
        ),
      );
      return;
    }
    this.queue.push(item);
    this.wakeUp();
  }

  /**
   * Waits for items and takes up to `maxItems` of them at once (batching
   * under load, a lone item at once). Resolves "idle" after `idleMs` without
   * items, and "closed" when the subscription or `signal` ends.
   */
  async next(maxItems: number, idleMs: number, signal: AbortSignal): Promise<SubscriptionWait<E>> {
    await this.wait(idleMs, signal);
    return this.poll(maxItems, signal);
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

  /** What there is now: up to `maxItems` items, the end, or "idle" when there is neither. */
  poll(maxItems: number, signal: AbortSignal): SubscriptionWait<E> {
    if (this.queue.length > this.head) return { kind: "items", items: this.take(maxItems) };
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

  /** Takes up to `maxItems` queued items, oldest first. */
  private take(maxItems: number): StreamItem<E>[] {
    if (this.head === 0 && this.queue.length <= maxItems) {
      const all = this.queue;
      this.queue = [];
      return all;
    }
    const end = Math.min(this.queue.length, this.head + maxItems);
    const items = this.queue.slice(this.head, end);
    this.head = end;
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
