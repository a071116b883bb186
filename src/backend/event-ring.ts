import type { UnknownField } from "@bufbuild/protobuf";

/** One event as its wire bytes (field 1 of WatchRuntimeResponse or WatchWorkerResponse). */
export interface RingEntry {
  field: UnknownField;
  /** Its durable cursor; "" for a live, non-durable event. */
  cursor: string;
}

/**
 * The most recent events of one shared watch (a Runtime's WatchRuntime,
 * shared-runtime-watch.ts, or one worker's WatchWorker,
 * shared-worker-watch.ts), as undecoded wire bytes, bounded by count and
 * bytes. Entries are numbered by a seq that
 * only grows, so a client's place in the ring is one number and the ring
 * holds no per-client queue; a cursor maps to the seq of the entry after it.
 */
export class EventRing {
  private readonly maxEvents: number;
  private readonly maxBytes: number;
  private entries: RingEntry[] = [];
  /** Seq of entries[0]. */
  private firstSeq = 0;
  private bytes = 0;
  /** cursor → seq of the entry that follows it. */
  private readonly positions = new Map<string, number>();

  constructor(maxEvents: number, maxBytes: number) {
    this.maxEvents = maxEvents;
    this.maxBytes = maxBytes;
  }

  /** Seq of the oldest entry held (a reader behind it has fallen off). */
  get first(): number {
    return this.firstSeq;
  }

  /** Seq the next entry will get. */
  get next(): number {
    return this.firstSeq + this.entries.length;
  }

  /** Whether the ring has ever seen `cursor` (it may since have dropped the events after it). */
  knows(cursor: string): boolean {
    return this.positions.has(cursor);
  }

  /** Seq of the entry after `cursor`, when the ring still holds every event after it. */
  positionAfter(cursor: string): number | undefined {
    const next = this.positions.get(cursor);
    return next !== undefined && next >= this.firstSeq ? next : undefined;
  }

  /** Records the opening snapshot's cursor: the events after it follow. */
  opened(cursor: string): void {
    if (cursor) this.positions.set(cursor, this.next);
  }

  /** Appends one event; over a bound, the oldest are dropped. */
  push(field: UnknownField, cursor: string): void {
    this.entries.push({ field, cursor });
    this.bytes += field.data.byteLength;
    if (cursor) this.positions.set(cursor, this.next);
    this.evict();
  }

  /** The entry of seq `seq`, which the ring holds (from {@link first} to before {@link next}). */
  at(seq: number): RingEntry {
    return this.entries[seq - this.firstSeq] as RingEntry;
  }

  /** Forgets every event and cursor (the Runtime no longer accepts them); seqs keep growing. */
  clear(): void {
    this.firstSeq = this.next;
    this.entries = [];
    this.bytes = 0;
    this.positions.clear();
  }

  /** Over a bound, drops the oldest events down to 7/8 of it, so the copy is amortized over many events. */
  private evict(): void {
    if (this.entries.length <= this.maxEvents && this.bytes <= this.maxBytes) return;
    const events = Math.floor((this.maxEvents * 7) / 8);
    const bytes = Math.floor((this.maxBytes * 7) / 8);
    let drop = 0;
    while (this.entries.length - drop > events || (this.bytes > bytes && this.entries.length - drop > 1)) {
      this.bytes -= (this.entries[drop] as RingEntry).field.data.byteLength;
      drop++;
    }
    if (drop === 0) return;
    this.entries = this.entries.slice(drop);
    this.firstSeq += drop;
    // A cursor stays resumable while the ring holds every event after it (the last dropped event's still
    // does); the others go. A sweep of the map: it holds at most one cursor per event held, and runs once
    // per eighth of the ring.
    for (const [cursor, next] of this.positions) if (next < this.firstSeq) this.positions.delete(cursor);
  }
}
