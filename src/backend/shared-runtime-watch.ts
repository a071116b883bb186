import { create, fromBinary, type UnknownField } from "@bufbuild/protobuf";
import { BinaryReader } from "@bufbuild/protobuf/wire";
import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorDetailSchema, ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { RuntimeSnapshotSchema } from "../../gen/worker_runtime/v1/events_pb.js";
import {
  WatchRuntimeRequestSchema,
  WatchRuntimeResponseSchema,
  type WatchRuntimeResponse,
} from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import { bounded, type Logger } from "../runtime/index.js";
import { sleepUnlessAborted, type ConnectionBackoffOptions } from "./backoff.js";
import { EVENT_CURSOR, EVENTS, HEARTBEAT, rawRuntimeWatch, SNAPSHOT, stringField } from "./raw-watch.js";
import { RuntimeRemovedError, type RuntimeConnection, waitUntilReady } from "./runtime-connection.js";
import { EventRing } from "./event-ring.js";
import { RingReaders } from "./ring-readers.js";
import { StreamRetry } from "./stream-retry.js";
import { fromUpstream, runtimeRemoved, typed } from "./upstream-errors.js";

/** Options for {@link SharedRuntimeWatch}. */
export interface SharedRuntimeWatchOptions {
  /** Most events the ring holds (default 4096). */
  maxEvents?: number;
  /** Most event bytes the ring holds (default 8 MiB). */
  maxBytes?: number;
  /** Heartbeat period to clients while the upstream is away. */
  heartbeatMs: number;
  /** Resume backoff of the upstream (default: the connection's, gRPC's). */
  backoff?: ConnectionBackoffOptions;
  logger: Logger;
}

/** How long a probe may take to get its snapshot and see the shared stream reach its cursor. */
const PROBE_MS = 2_000;

/** A snapshot the Runtime sent a probe, and the ring position of the first event after it. */
interface FreshSnapshot {
  field: UnknownField;
  seq: number;
}

/**
 * One upstream WatchRuntime per Runtime, shared by every client of the
 * Backend (the list-then-watch pattern of Kubernetes informers). It opens
 * at the snapshot when the Runtime first becomes READY and keeps a ring of
 * the most recent events (bounded by count and bytes, kept as undecoded
 * wire bytes). A client's snapshot is never an old one: each joining client
 * gets the one the Runtime gives a short probe watch opened for it (shared
 * by clients that join while it waits for it), so its runtime summary and
 * cursor are what a direct watcher gets at that moment, and the ring serves
 * the events after it. After any upstream failure (a cut connection, a
 * Runtime restart, SUBSCRIBER_TOO_SLOW) it waits the backoff and READY, then
 * resumes after its last durable cursor, so the ring stays gap-free; the
 * backoff resets only once a stream proves healthy (stream-retry.ts). If the
 * Runtime no longer accepts that cursor (OUT_OF_RANGE / CURSOR_EXPIRED, or
 * CURSOR_FOREIGN after its store was replaced) it logs a warning, ends every
 * client with that typed error (they resume by cursor and get their own
 * answer, never a silent gap) and starts again from a fresh snapshot.
 *
 * A client reads the ring by position, so it holds no queue of its own: its
 * backlog is bounded by the ring, and one that falls off the ring's tail is
 * ended with RESOURCE_EXHAUSTED / SUBSCRIBER_TOO_SLOW (as the Runtime does)
 * and resumes by cursor. A client the ring cannot serve (its cursor is
 * older than the ring, the Runtime is away, or no snapshot could be taken
 * for it) gets `undefined` from {@link serve} and is relayed on its own
 * upstream stream.
 */
export class SharedRuntimeWatch {
  private readonly connection: RuntimeConnection;
  private readonly options: SharedRuntimeWatchOptions;
  private readonly stopped = new AbortController();
  private readonly ring: EventRing;
  /** The last durable cursor received ("" before the first snapshot). */
  private cursor = "";
  private readonly readers: RingReaders<WatchRuntimeResponse>;
  /** The probe a joining client may share: one that has not received its snapshot yet. */
  private probing: Promise<FreshSnapshot | undefined> | undefined;
  /** How many times the upstream stream was opened (for diagnostics and tests). */
  upstreamOpens = 0;
  /** How many clients were served from the ring, not relayed on their own stream (for diagnostics and tests). */
  clientsServed = 0;

  /** Clients being served (for diagnostics and tests). */
  get readerCount(): number {
    return this.readers.size;
  }

  constructor(connection: RuntimeConnection, options: SharedRuntimeWatchOptions) {
    this.connection = connection;
    this.options = options;
    this.ring = new EventRing(options.maxEvents ?? 4096, options.maxBytes ?? 8 * 1024 * 1024);
    this.readers = new RingReaders(this.ring, {
      wrap,
      heartbeat: () => (this.cursor === "" ? undefined : create(WatchRuntimeResponseSchema, { heartbeat: { cursor: this.cursor } })),
      tooSlow: () => tooSlow(connection.runtimeId),
    });
  }

  /** Starts the upstream loop; it runs until {@link stop} or the connection is closed. */
  start(): void {
    void this.loop();
  }

  /** Stops the upstream and ends every client with NOT_FOUND (the Runtime was removed), or cleanly when the Backend shuts down. */
  stop(): void {
    if (this.stopped.signal.aborted) return;
    if (this.connection.closedForShutdown) {
      this.endAll();
      return;
    }
    this.stopped.abort();
    this.failAll(runtimeRemoved(this.connection.runtimeId));
  }

  /**
   * Serves a client a snapshot (the Runtime's, taken for it), then the
   * events after `afterCursor` ("" = after the snapshot) and live ones, or
   * undefined when the ring cannot (the caller relays on its own stream).
   */
  async serve(afterCursor: string, signal: AbortSignal): Promise<AsyncGenerator<WatchRuntimeResponse> | undefined> {
    if (this.stopped.signal.aborted) return undefined;
    // A runtime that is away cannot give a snapshot: the relay answers at once, as a direct watch would fail.
    if (!this.connection.routable || (afterCursor !== "" && this.ring.positionAfter(afterCursor) === undefined)) return undefined;
    const fresh = await this.freshSnapshot(signal);
    if (!fresh || signal.aborted) return undefined;
    let first: WatchRuntimeResponse;
    let next: number | undefined;
    if (afterCursor === "") {
      first = wrap([fresh.field]);
      next = fresh.seq;
    } else {
      next = this.ring.positionAfter(afterCursor);
      if (next === undefined) return undefined;
      first = this.resumeSnapshot(fresh);
    }
    this.clientsServed++;
    return this.readers.read(first, next, 0, signal);
  }

  /**
   * The first message of a stream resumed from a cursor, as the Runtime
   * sends it: a snapshot with the Runtime's summary as of now (the fresh
   * snapshot's) at the last durable cursor received, which is not behind
   * the client's, then the events after the client's cursor.
   */
  private resumeSnapshot(fresh: FreshSnapshot): WatchRuntimeResponse {
    const snapshot = fromBinary(RuntimeSnapshotSchema, new BinaryReader(fresh.field.data).bytes());
    snapshot.cursor = this.cursor;
    return create(WatchRuntimeResponseSchema, { snapshot });
  }

  /**
   * The snapshot a direct watcher would get now, from a short upstream
   * WatchRuntime opened at the snapshot, once the shared stream has reached
   * its cursor (undefined when all that takes over 2 s or the probe fails: the
   * client is then relayed on its own stream). Clients that join before the
   * probe's snapshot has come share it; a later one gets a probe of its
   * own, so no client gets a summary from before it joined. A cached
   * snapshot would not do: the summary (worker counts, status, diagnostic
   * count) changes with every event and without one, and the ring holds
   * only events.
   */
  private freshSnapshot(signal: AbortSignal): Promise<FreshSnapshot | undefined> {
    if (!this.probing) {
      const probing: Promise<FreshSnapshot | undefined> = this.probe(() => {
        if (this.probing === probing) this.probing = undefined;
      });
      this.probing = probing;
    }
    return signal.aborted ? Promise.resolve(undefined) : this.probing;
  }

  private async probe(snapshotCame: () => void): Promise<FreshSnapshot | undefined> {
    const probe = new AbortController();
    const stop = (): void => probe.abort();
    this.stopped.signal.addEventListener("abort", stop);
    // Bounded: a client waits for it before its response headers go out.
    const timer = setTimeout(stop, PROBE_MS);
    try {
      const watch = rawRuntimeWatch(create(WatchRuntimeRequestSchema, { runtimeId: this.connection.runtimeId }));
      for await (const message of watch.open(this.connection, "", probe.signal)) {
        snapshotCame();
        const field = (message.$unknown ?? []).find((f) => f.no === SNAPSHOT);
        if (!field) return undefined;
        const cursor = stringField(field.data, 2);
        while (!this.ring.knows(cursor) && !probe.signal.aborted) {
          await sleepUnlessAborted(10, probe.signal);
        }
        const seq = this.ring.positionAfter(cursor);
        return seq === undefined ? undefined : { field, seq };
      }
      return undefined;
    } catch {
      return undefined;
    } finally {
      clearTimeout(timer);
      snapshotCame();
      this.stopped.signal.removeEventListener("abort", stop);
      probe.abort();
    }
  }

  private async loop(): Promise<void> {
    const signal = this.stopped.signal;
    // Reset by a real event, not the snapshot or heartbeat every open starts with (stream-retry.ts).
    const retry = new StreamRetry(this.options.backoff);
    const watch = rawRuntimeWatch(create(WatchRuntimeRequestSchema, { runtimeId: this.connection.runtimeId }));
    while (!signal.aborted) {
      try {
        await waitUntilReady(this.connection, signal);
      } catch (error) {
        if (error instanceof RuntimeRemovedError) this.stop();
        return;
      }
      const generation = this.connection.routeGeneration;
      try {
        this.upstreamOpens++;
        retry.opened();
        for await (const message of watch.open(this.connection, this.cursor, signal)) {
          const fields = message.$unknown ?? [];
          if (fields.some((field) => field.no === EVENTS)) retry.proved();
          this.receive(fields);
        }
        // The embedded Runtime ends it cleanly only when it closes, with its Backend: nothing to resume.
        if (this.connection.embedded) return this.endAll();
        this.options.logger.info("shared runtime watch ended upstream; resuming", { runtime_id: this.connection.runtimeId });
      } catch (error) {
        if (signal.aborted) return;
        if (this.connection.isClosed) return this.stop();
        const upstream = ConnectError.from(error);
        if (isLost(upstream)) {
          this.options.logger.warn("shared runtime watch: the runtime no longer accepts its cursor; re-snapshotting", {
            runtime_id: this.connection.runtimeId,
            code: Code[upstream.code],
            cause: bounded(upstream.message),
          });
          this.reset(fromUpstream(upstream, this.connection.runtimeId, this.options.logger, signal));
          continue;
        }
        this.connection.reportFailure(upstream, generation);
        this.options.logger.info("shared runtime watch lost its upstream; resuming", {
          runtime_id: this.connection.runtimeId,
          cause: bounded(upstream.message),
        });
      }
      await this.away(retry.next(), signal);
    }
  }

  /** Takes in one upstream message: a snapshot (only on a fresh open), events, heartbeats. */
  private receive(fields: readonly UnknownField[]): void {
    let heartbeat = false;
    for (const field of fields) {
      if (field.no === SNAPSHOT) {
        // A resumed stream's snapshot: the ring already continues it (clients get their snapshots from probes).
        if (this.cursor !== "") continue;
        const cursor = stringField(field.data, 2);
        this.cursor = cursor;
        this.ring.opened(cursor);
      } else if (field.no === EVENTS) {
        const cursor = stringField(field.data, EVENT_CURSOR);
        this.ring.push(field, cursor);
        if (cursor) this.cursor = cursor;
      } else if (field.no === HEARTBEAT) {
        heartbeat = true;
      }
    }
    // An upstream heartbeat reaches each reader once it has caught up, with the last durable cursor.
    this.readers.wake(heartbeat && this.cursor !== "");
  }

  /** Waits at least `minMs`, then until READY, sending readers heartbeats with the last cursor meanwhile. */
  private async away(minMs: number, signal: AbortSignal): Promise<void> {
    const timer = setInterval(() => this.heartbeat(), this.options.heartbeatMs);
    try {
      await sleepUnlessAborted(minMs, signal);
      await waitUntilReady(this.connection, signal).catch(() => undefined);
    } finally {
      clearInterval(timer);
    }
  }

  private heartbeat(): void {
    if (this.cursor !== "") this.readers.wake(true);
  }

  /** OUT_OF_RANGE: end every reader with `error` and start again from a fresh snapshot. */
  private reset(error: ConnectError): void {
    this.failAll(error);
    this.ring.clear();
    this.cursor = "";
  }

  /** Every client's stream ends cleanly after what it has not read yet, as the Runtime's own watches end when it closes. */
  private endAll(): void {
    this.stopped.abort();
    this.readers.end();
  }

  /** Every client's stream ends with `error` at once (what it has not read is gone or will not come). */
  private failAll(error: ConnectError): void {
    this.readers.fail(error, true);
  }
}

function wrap(fields: UnknownField[]): WatchRuntimeResponse {
  const message = create(WatchRuntimeResponseSchema);
  message.$unknown = fields;
  return message;
}

/**
 * The runtime no longer accepts the shared cursor: it is older than its
 * history (CURSOR_EXPIRED) or from a replaced store (CURSOR_FOREIGN, or
 * "ahead of the stream"). Resuming cannot succeed; only a fresh snapshot can.
 */
function isLost(error: ConnectError): boolean {
  const reason = error.findDetails(ErrorDetailSchema)[0]?.reason;
  return (
    error.code === Code.OutOfRange ||
    reason === ErrorReason.CURSOR_EXPIRED ||
    reason === ErrorReason.CURSOR_FOREIGN ||
    (error.code === Code.InvalidArgument && reason === ErrorReason.INVALID_ARGUMENT)
  );
}

function tooSlow(runtimeId: string): ConnectError {
  return typed(
    Code.ResourceExhausted,
    ErrorReason.SUBSCRIBER_TOO_SLOW,
    `the watch fell behind the backend's event buffer of runtime ${runtimeId}; resume from the last cursor`,
    runtimeId,
  );
}
