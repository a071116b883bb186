import type { TranscriptEntry } from "../../gen/worker_runtime/v1/transcript_pb.js";
import { encodeCursor, type CursorStream } from "./cursor.js";
import type { RuntimeError } from "./errors.js";
import type { PendingDelete } from "./pending-delete.js";
import type { StoredEvent } from "./store.js";
import { type BacklogBounds, Subscription, type StreamItem } from "./subscription.js";

/** How a {@link DurableEventStream} persists and reads its events. */
export interface EventStreamInit<E> {
  /** The stream its cursors name (see cursor.ts). */
  stream: CursorStream;
  /** Seq of the last durable event at start-up. */
  lastSeq: bigint;
  /** Seq of the last transcript entry at start-up (worker streams). */
  lastTranscriptSeq?: bigint;
  /** Encodes an event once for storage and the wire. */
  encode(event: E): Uint8Array;
  /** Persists transcript entries of one batch; durable on resolve (worker streams). */
  persistTranscript?(transcript: TranscriptEntry[]): Promise<void>;
  /** Persists the events of one batch, after its transcript entries; durable on resolve. */
  persistEvents(events: StoredEvent[]): Promise<void>;
  /** Called with every persist outcome, to track store health. */
  onPersistResult(error: unknown): void;
  /** Called for every item as it is delivered, before subscribers get it. */
  onDeliver?(item: StreamItem<E>, event: E): void;
  /**
   * Writes and announces again what failed writes left owed (a worker's
   * journal: see WorkerJournal.catchUp); called as each subscription opens
   * and by {@link DurableEventStream.catchUp}.
   */
  catchUp?(): void;
  /** Backlog bounds of each subscription. */
  subscriberBacklog: BacklogBounds;
}

/** Builds a durable event once its seq and cursor are known. */
export type DurableEventBuilder<E> = (seq: bigint, cursor: string) => E;

interface Pending<E> {
  item: StreamItem<E>;
  event: E;
  durable: boolean;
  transcript?: TranscriptEntry;
  ready: boolean;
  settle?: { resolve: () => void; reject: (error: unknown) => void };
}

/**
 * An ordered, gap-free event stream with durable delivery. Durable events
 * get their seq when emitted, are written by a single serial writer (all
 * events emitted while a write is in flight go into the next batch: group
 * commit), and are delivered to observers only once durable. Live deltas
 * take their place in the same order, so observers always see a consistent
 * sequence. A failed write rejects its batch and everything queued after
 * it and rolls the counters back, so the stream stays gap-free.
 */
export class DurableEventStream<E> {
  private lastAssignedSeq: bigint;
  private lastAssignedTranscriptSeq: bigint;
  private lastDurableTranscriptSeq: bigint;
  private delivered: bigint;
  private readonly order: Pending<E>[] = [];
  private unwritten: Pending<E>[] = [];
  private writing = false;
  private readonly subscribers = new Set<Subscription<E>>();
  /** The subscriptions of StreamInput calls, among `subscribers`: counted apart so observers cannot take the input path's slots. */
  private readonly inputSubscribers = new Set<Subscription<E>>();
  private ending: PendingDelete | undefined;

  constructor(private readonly init: EventStreamInit<E>) {
    this.lastAssignedSeq = init.lastSeq;
    this.delivered = init.lastSeq;
    this.lastAssignedTranscriptSeq = init.lastTranscriptSeq ?? 0n;
    this.lastDurableTranscriptSeq = this.lastAssignedTranscriptSeq;
  }

  /** The stream its cursors name: decodes resume cursors and encodes snapshot cursors. */
  get cursorStream(): CursorStream {
    return this.init.stream;
  }

  /** Seq of the last event delivered to observers: the live resume point. */
  get lastDeliveredSeq(): bigint {
    return this.delivered;
  }

  /** Seq of the last durable transcript entry. */
  get lastTranscriptSeq(): bigint {
    return this.lastDurableTranscriptSeq;
  }

  /** Seq of the last transcript entry emitted, durable or not yet. */
  get assignedTranscriptSeq(): bigint {
    return this.lastAssignedTranscriptSeq;
  }

  /** Number of live subscriptions. */
  get subscriberCount(): number {
    return this.subscribers.size;
  }

  /** Number of live subscriptions taken for StreamInput calls (counted in `subscriberCount` too). */
  get inputSubscriberCount(): number {
    return this.inputSubscribers.size;
  }

  /** Emits a durable event; resolves with it once it is durable and delivered. */
  emitDurable(build: DurableEventBuilder<E>): Promise<E> {
    return this.enqueueDurable(build);
  }

  /**
   * Commits a transcript entry together with the durable event announcing
   * it, in one write batch; resolves once both are durable.
   */
  emitWithTranscript(
    buildEntry: (transcriptSeq: bigint) => TranscriptEntry,
    build: (entry: TranscriptEntry, seq: bigint, cursor: string) => E,
  ): Promise<{ entry: TranscriptEntry; event: E }> {
    const entry = buildEntry(++this.lastAssignedTranscriptSeq);
    return this.enqueueDurable((seq, cursor) => build(entry, seq, cursor), entry).then((event) => ({ entry, event }));
  }

  /** Emits a live (non-durable) event in order behind pending durable ones. */
  emitLive(event: E): void {
    const item: StreamItem<E> = { seq: 0n, bytes: this.init.encode(event), event };
    if (this.order.length === 0) {
      // Nothing pending ahead of it (the common case for a streaming run's deltas): delivered at once.
      this.deliver(item, event);
      return;
    }
    this.order.push({ item, event, durable: false, ready: true });
    this.flush();
  }

  /** Registers an observer at the current delivery point; `forInput` marks a StreamInput call's. */
  subscribe(forInput = false): Subscription<E> {
    const subscription = new Subscription<E>(this.init.subscriberBacklog, (s) => {
      this.subscribers.delete(s);
      this.inputSubscribers.delete(s);
    });
    this.subscribers.add(subscription);
    if (forInput) this.inputSubscribers.add(subscription);
    this.init.catchUp?.();
    return subscription;
  }

  /** Has the stream's owner write and announce what it owes, now that the store writes again. */
  catchUp(): void {
    this.init.catchUp?.();
  }

  /** The delete under way that is to end the stream, from the moment it begins (see {@link announceEnd}). */
  get endingWith(): PendingDelete | undefined {
    return this.ending;
  }

  /**
   * Marks the stream as ending by its worker's delete (which begins before
   * it ends the worker's runs), so a StreamInput that sees its run end
   * meanwhile ends with the delete's outcome (see pending-delete.ts). The
   * subscriptions end at {@link closeAll} once the worker is deleted; a
   * failed delete leaves them open (the worker stays) and the mark in place.
   */
  announceEnd(ending: PendingDelete): void {
    this.ending = ending;
  }

  /**
   * Ends every subscription: cleanly when the runtime closes; with `error`
   * after the events each holds when the worker is deleted, so a watcher
   * sees the last events and then why there are no more.
   */
  closeAll(error?: RuntimeError): void {
    for (const subscription of [...this.subscribers]) {
      if (error) subscription.closeAfterQueued(error);
      else subscription.close();
    }
  }

  private enqueueDurable(build: DurableEventBuilder<E>, transcript?: TranscriptEntry): Promise<E> {
    const seq = ++this.lastAssignedSeq;
    const event = build(seq, encodeCursor(this.init.stream, seq));
    const item: StreamItem<E> = { seq, bytes: this.init.encode(event), event };
    return new Promise<E>((resolve, reject) => {
      const pending: Pending<E> = {
        item,
        event,
        durable: true,
        ready: false,
        settle: { resolve: () => resolve(event), reject },
        ...(transcript ? { transcript } : {}),
      };
      this.order.push(pending);
      this.unwritten.push(pending);
      void this.write();
    });
  }

  private async write(): Promise<void> {
    if (this.writing) return;
    this.writing = true;
    try {
      while (this.unwritten.length > 0) {
        const batch = this.unwritten;
        this.unwritten = [];
        const events = batch.map((p) => ({ seq: p.item.seq, bytes: p.item.bytes }));
        const transcript = batch.flatMap((p) => (p.transcript ? [p.transcript] : []));
        try {
          const lastEntry = transcript[transcript.length - 1];
          if (lastEntry) {
            await this.init.persistTranscript?.(transcript);
            // Durable now even if the events below fail: the counter must not reuse these seqs.
            this.lastDurableTranscriptSeq = lastEntry.seq;
          }
          await this.init.persistEvents(events);
          this.init.onPersistResult(undefined);
        } catch (error) {
          this.init.onPersistResult(error);
          this.rollBack(batch, error);
          continue;
        }
        for (const p of batch) p.ready = true;
        this.flush();
        for (const p of batch) p.settle?.resolve();
      }
    } finally {
      this.writing = false;
    }
  }

  /** Drops a failed batch and everything emitted after it; counters go back. */
  private rollBack(batch: Pending<E>[], error: unknown): void {
    const failed = [...batch, ...this.unwritten];
    this.unwritten = [];
    const first = batch[0];
    if (first) this.lastAssignedSeq = first.item.seq - 1n;
    this.lastAssignedTranscriptSeq = this.lastDurableTranscriptSeq;
    const dropped = new Set(failed);
    for (let i = this.order.length - 1; i >= 0; i--) {
      const pending = this.order[i];
      if (pending && dropped.has(pending)) this.order.splice(i, 1);
    }
    for (const p of failed) p.settle?.reject(error);
    this.flush();
  }

  private flush(): void {
    let count = 0;
    while (count < this.order.length && this.order[count]?.ready) count++;
    if (count === 0) return;
    const ready = this.order.splice(0, count);
    for (const p of ready) {
      if (p.durable) this.delivered = p.item.seq;
      this.deliver(p.item, p.event);
    }
  }

  private deliver(item: StreamItem<E>, event: E): void {
    this.init.onDeliver?.(item, event);
    for (const subscription of this.subscribers) subscription.push(item);
  }
}
