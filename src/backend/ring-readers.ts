import type { UnknownField } from "@bufbuild/protobuf";
import type { ConnectError } from "@connectrpc/connect";
import type { EventRing } from "./event-ring.js";

/** Most events, and about the most bytes, sent to a client in one response. */
const BATCH_EVENTS = 256;
const BATCH_BYTES = 1024 * 1024;

/** How a shared watch's clients read its ring: their messages, and the ring's own end. */
export interface RingReadersOptions<M> {
  /** A response carrying these undecoded events (written verbatim, see raw-watch.ts). */
  wrap(fields: UnknownField[]): M;
  /** The heartbeat a caught-up client gets when one is due, with the cursor reached now; undefined: none to give yet. */
  heartbeat(): M | undefined;
  /** The error a client that fell off the ring's tail is ended with (SUBSCRIBER_TOO_SLOW). */
  tooSlow(): ConnectError;
  /** Told when a client left (its stream ended, or its client went away). */
  left?(): void;
}

/** A client's place in the ring. */
interface Reader {
  /** Seq of the next entry it reads. */
  next: number;
  /** Entries before this seq were sent before its snapshot: only their durable events are sent. */
  replayUntil: number;
  /** A heartbeat is due once it has caught up. */
  heartbeat: boolean;
  error: ConnectError | undefined;
  /** The error ends it at once, not after what it has not read yet. */
  failNow: boolean;
  /** The upstream ended for good: the stream ends once caught up. */
  ended: boolean;
  wake: (() => void) | undefined;
}

/**
 * The clients of one shared watch (shared-runtime-watch.ts,
 * shared-worker-watch.ts), each reading the watch's {@link EventRing} by
 * position: a client holds one number, not a queue, so its backlog is
 * bounded by the ring, and one that falls off the ring's tail is ended with
 * the watch's `tooSlow` error (it resumes by cursor); the upstream and the
 * others never wait for it. Events go out in batches of at most 256 events
 * and about 1 MiB, as the undecoded entries the ring holds.
 */
export class RingReaders<M> {
  private readonly readers = new Set<Reader>();

  constructor(
    private readonly ring: EventRing,
    private readonly options: RingReadersOptions<M>,
  ) {}

  /** Clients being served. */
  get size(): number {
    return this.readers.size;
  }

  /**
   * A client's stream: `first` (its snapshot), then the ring from seq
   * `next` on, the entries before `replayUntil` only if durable (their live
   * output is in its snapshot). Its place is released on the abort itself,
   * not only when the stream ends: a handler blocked on a write to a client
   * that left may never resume (CONVENTIONS.md).
   */
  read(first: M, next: number, replayUntil: number, signal: AbortSignal): AsyncGenerator<M> {
    const reader: Reader = { next, replayUntil, heartbeat: false, error: undefined, failNow: false, ended: false, wake: undefined };
    this.readers.add(reader);
    const release = (): void => {
      if (!this.readers.delete(reader)) return;
      reader.wake?.();
      this.options.left?.();
    };
    signal.addEventListener("abort", release, { once: true });
    if (signal.aborted) release();
    return this.stream(reader, first, signal, release);
  }

  /** Wakes every client for what the ring got; with `heartbeat`, one is due to each once it has caught up. */
  wake(heartbeat = false): void {
    for (const reader of this.readers) {
      if (heartbeat) reader.heartbeat = true;
      reader.wake?.();
    }
  }

  /** Every client's stream ends cleanly once it has read what the ring holds for it. */
  end(): void {
    for (const reader of this.readers) reader.ended = true;
    this.wake();
  }

  /** Every client's stream ends with `error`: at once (`now`), or after what the ring holds for it. */
  fail(error: ConnectError, now: boolean): void {
    for (const reader of this.readers) {
      reader.error = error;
      reader.failNow = now;
    }
    this.wake();
  }

  private async *stream(reader: Reader, first: M, signal: AbortSignal, release: () => void): AsyncGenerator<M> {
    try {
      yield first;
      for (;;) {
        if (signal.aborted) return;
        if (reader.error && reader.failNow) throw reader.error;
        if (reader.next < this.ring.first) throw this.options.tooSlow();
        if (reader.next < this.ring.next) {
          const fields = this.batch(reader);
          if (fields.length > 0) yield this.options.wrap(fields);
          continue;
        }
        if (reader.heartbeat) {
          reader.heartbeat = false;
          // Built now, with the cursor reached (caught up: the last durable one), not the one when the beat was due:
          // events read since then are past that, and resuming from it would replay them.
          const beat = this.options.heartbeat();
          if (beat !== undefined) yield beat;
          continue;
        }
        if (reader.error) throw reader.error;
        if (reader.ended) return;
        await new Promise<void>((resolve) => (reader.wake = resolve));
        reader.wake = undefined;
      }
    } finally {
      signal.removeEventListener("abort", release);
      release();
    }
  }

  /** The reader's next events, up to a batch's bounds. */
  private batch(reader: Reader): UnknownField[] {
    const fields: UnknownField[] = [];
    let bytes = 0;
    const end = Math.min(this.ring.next, reader.next + BATCH_EVENTS);
    for (; reader.next < end; reader.next++) {
      const entry = this.ring.at(reader.next);
      if (fields.length > 0 && bytes + entry.field.data.byteLength > BATCH_BYTES) break;
      if (reader.next >= reader.replayUntil || entry.cursor !== "") {
        fields.push(entry.field);
        bytes += entry.field.data.byteLength;
      }
    }
    return fields;
  }
}
