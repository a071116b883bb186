import { create, toBinary, type UnknownField } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { Code, ConnectError } from "@connectrpc/connect";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { WorkerEventSchema, type WorkerEvent } from "../../gen/worker_runtime/v1/events_pb.js";
import {
  WatchWorkerRequestSchema,
  WatchWorkerResponseSchema,
  type WatchWorkerResponse,
} from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import type { Logger } from "../runtime/index.js";
import { EventRing } from "./event-ring.js";
import { EVENT_CURSOR, EVENTS, HEARTBEAT, rawWorkerWatch, SNAPSHOT, stringField } from "./raw-watch.js";
import { rawWorkerChange, RecentIds } from "./raw-worker-event.js";
import { RelayedWorkerView } from "./relayed-worker-view.js";
import type { RuntimeConnection } from "./runtime-connection.js";
import type { RuntimeDirectory } from "./runtime-directory.js";
import { typed } from "./upstream-errors.js";
import { RingReaders } from "./ring-readers.js";
import { relayWatch, type ResumableWatch } from "./watch-relay.js";
import { decodedSnapshot, shownState } from "./worker-watch-catch-up.js";

/** Options for {@link SharedWorkerWatch}. */
export interface SharedWorkerWatchOptions {
  /** Most events the ring holds (default 4096). */
  maxEvents?: number;
  /** Most event bytes the ring holds (default 4 MiB). */
  maxBytes?: number;
  /** Most in-flight text bytes the view holds (default 4 MiB, the largest message). */
  maxInFlightBytes?: number;
  /** How long the upstream stays open after its last client left. */
  lingerMs: number;
  /** Heartbeat period to clients while the upstream is away. */
  heartbeatMs: number;
  logger: Logger;
}

/**
 * One upstream WatchWorker of one worker, shared by every client of the
 * Backend watching it (SPEC §9: a Runtime's per-worker watcher limit is
 * not spent by browsers). The upstream is relayWatch (watch-relay.ts) as
 * one virtual client: it resumes by cursor after any upstream failure and,
 * through its ShownState, catches up what a resumed stream tells live only.
 * That ShownState is the watch's {@link RelayedWorkerView}, holding text
 * (the worker's full current state, in-flight text included): each event
 * the relay shows its virtual client is read once, applied to the view and
 * put in a bounded ring of the recent events, in the same tick, so the view
 * and the ring never disagree. A joining client gets a snapshot cut from the view, and
 * then reads the ring from that point: it sees exactly what the virtual
 * client sees from then on, so its screen is the one of a client that
 * watched from the start. With a cursor, the snapshot is followed by the
 * durable events after it the ring holds (as the Runtime replays stored
 * events after a snapshot), then live ones. A cursor the ring does not
 * hold, a Runtime away, or no view: {@link serve} says undefined and the
 * caller relays that client on its own upstream stream.
 *
 * A client holds only its place in the ring: one that falls off the ring's
 * tail is ended with RESOURCE_EXHAUSTED / SUBSCRIBER_TOO_SLOW (as the
 * Runtime does) and resumes by cursor; the upstream and the others never
 * wait for it. A typed end of the upstream (the worker deleted, the
 * Runtime removed, ...) ends every client with that error after what it
 * has not read yet; a clean one (the embedded Runtime or the Backend
 * closing) ends them cleanly. The upstream closes `lingerMs` after its
 * last client left.
 */
export class SharedWorkerWatch {
  private readonly upstream = new AbortController();
  private readonly ring: EventRing;
  private readonly view: RelayedWorkerView;
  private readonly ids = new RecentIds();
  private readonly readers: RingReaders<WatchWorkerResponse>;
  /** Settles with the upstream's snapshot (true), the error it failed with before one, or false when it ended without either. */
  private readonly opened: Promise<boolean | ConnectError>;
  private open: (outcome: boolean | ConnectError) => void = () => {};
  private hasView = false;
  /** Clients in {@link serve}, not yet readers. */
  private joining = 0;
  private linger: ReturnType<typeof setTimeout> | undefined;
  /** No client can join any more: the upstream ended or is closing. */
  closed = false;
  /** How many clients were served from it (for diagnostics and tests). */
  clientsServed = 0;

  constructor(
    private readonly directory: RuntimeDirectory,
    private readonly connection: RuntimeConnection,
    private readonly worker: WorkerRef,
    private readonly options: SharedWorkerWatchOptions,
    private readonly onClosed: () => void,
  ) {
    this.ring = new EventRing(options.maxEvents ?? 4096, options.maxBytes ?? 4 * 1024 * 1024);
    this.view = new RelayedWorkerView(options.maxInFlightBytes ?? 4 * 1024 * 1024);
    this.readers = new RingReaders(this.ring, {
      wrap,
      heartbeat: () => create(WatchWorkerResponseSchema, { heartbeat: { cursor: this.view.cursor } }),
      tooSlow: () => this.tooSlow(),
      left: () => this.lingerIfIdle(),
    });
    this.opened = new Promise((resolve) => (this.open = resolve));
  }

  /** Clients being served (for diagnostics and tests). */
  get readerCount(): number {
    return this.readers.size;
  }

  /** Opens the upstream; it runs until it ends or lingers out ({@link serve} follows at once, and starts the linger if need be). */
  start(): void {
    void this.loop();
  }

  /**
   * Serves a client: the snapshot, then the events after `afterCursor`
   * ("" = after the snapshot) and live ones; undefined when it cannot
   * (the caller relays the client on its own stream). A client without a
   * cursor that joins while the upstream opens waits for it, and gets the
   * error it fails with (the answer the Runtime gives a watch opened
   * without a cursor); one with a cursor does not wait: an empty ring holds
   * no cursor.
   */
  async serve(afterCursor: string, signal: AbortSignal): Promise<AsyncGenerator<WatchWorkerResponse> | undefined> {
    // A client waiting for the upstream to open holds it open as a reader does.
    this.joining++;
    try {
      return await this.join(afterCursor, signal);
    } finally {
      this.joining--;
      this.lingerIfIdle();
    }
  }

  private async join(afterCursor: string, signal: AbortSignal): Promise<AsyncGenerator<WatchWorkerResponse> | undefined> {
    if (afterCursor !== "" && !this.hasView) return undefined;
    const aborted = new Promise<boolean>((resolve) => signal.addEventListener("abort", () => resolve(false), { once: true }));
    const ready = this.closed ? false : await Promise.race([this.opened, aborted]);
    if (ready instanceof ConnectError && afterCursor === "" && !signal.aborted) throw ready;
    if (ready !== true || this.closed || signal.aborted || !this.connection.routable || !this.view.servable) return undefined;
    const next = afterCursor === "" ? this.ring.next : this.ring.positionAfter(afterCursor);
    if (next === undefined) return undefined;
    // Cut in the same tick as the reader's place: the snapshot shows exactly the entries before ring.next.
    const first = create(WatchWorkerResponseSchema, { snapshot: this.view.snapshot() });
    const stream = this.readers.read(first, next, this.ring.next, signal);
    this.clientsServed++;
    clearTimeout(this.linger);
    return stream;
  }

  private async loop(): Promise<void> {
    const signal = this.upstream.signal;
    const watch: ResumableWatch<WatchWorkerResponse> = {
      ...rawWorkerWatch(create(WatchWorkerRequestSchema, { worker: this.worker })),
      shown: () =>
        shownState(
          this.worker,
          undefined,
          this.view,
          (message) => this.note(message),
          (events) => this.caughtUp(events),
        ),
    };
    const relayOptions = { heartbeatMs: this.options.heartbeatMs, logger: this.options.logger };
    try {
      for await (const message of relayWatch(this.directory, this.connection.runtimeId, "", watch, signal, relayOptions)) {
        this.wake(message);
      }
      this.closed = true;
      this.readers.end();
    } catch (error) {
      const ended = ConnectError.from(error);
      this.open(ended);
      this.closed = true;
      this.readers.fail(ended, false);
    } finally {
      // closed was set above, before the readers were told, so no client joins an upstream that ended.
      this.open(false);
      clearTimeout(this.linger);
      this.onClosed();
    }
  }

  /**
   * Takes in one message the relay shows its virtual client (undecoded, see
   * raw-watch.ts): its snapshot (the first) resets the view, each event is
   * applied to the view and put in the ring. The view and the ring move in
   * the same tick: a client joining between them would get an event in its
   * snapshot and then again from the ring.
   */
  private note(message: WatchWorkerResponse): void {
    for (const field of message.$unknown ?? []) {
      if (field.no === EVENTS) {
        const cursor = stringField(field.data, EVENT_CURSOR);
        this.view.apply(rawWorkerChange(field.data, this.ids, true));
        this.ring.push(field, cursor);
        if (cursor) this.view.cursor = cursor;
      } else if (field.no === SNAPSHOT) {
        const snapshot = decodedSnapshot(field);
        this.view.reset(snapshot);
        this.ring.opened(snapshot.cursor);
        this.hasView = true;
        this.open(true);
      }
    }
  }

  /** The catch-up events the relay built from the view (applied to it already): into the ring, encoded once (rare). */
  private caughtUp(events: WorkerEvent[]): void {
    for (const event of events) {
      const data = new BinaryWriter().bytes(toBinary(WorkerEventSchema, event)).finish();
      this.ring.push({ no: EVENTS, wireType: WireType.LengthDelimited, data }, "");
    }
  }

  /** Wakes the readers for a message the relay yielded (its events are in the ring already); a heartbeat is due to each. */
  private wake(message: WatchWorkerResponse): void {
    this.readers.wake(message.heartbeat !== undefined || hasHeartbeat(message.$unknown));
  }

  /** With no client, closes the upstream after the linger, unless one joins meanwhile. */
  private lingerIfIdle(): void {
    if (this.readers.size > 0 || this.joining > 0 || this.closed) return;
    clearTimeout(this.linger);
    this.linger = setTimeout(() => {
      if (this.readers.size > 0 || this.joining > 0) return;
      this.closed = true;
      this.upstream.abort();
    }, this.options.lingerMs);
    // A lingering watch alone keeps no process alive.
    this.linger.unref?.();
  }

  private tooSlow(): ConnectError {
    return typed(
      Code.ResourceExhausted,
      ErrorReason.SUBSCRIBER_TOO_SLOW,
      `the watch fell behind the backend's event buffer of worker ${this.worker.workerId}; resume from the last cursor`,
      this.connection.runtimeId,
    );
  }
}

/** Whether an undecoded message holds a heartbeat (the relay's own are decoded). */
function hasHeartbeat(fields: readonly UnknownField[] | undefined): boolean {
  for (const field of fields ?? []) if (field.no === HEARTBEAT) return true;
  return false;
}

function wrap(fields: UnknownField[]): WatchWorkerResponse {
  const message = create(WatchWorkerResponseSchema);
  message.$unknown = fields;
  return message;
}
