import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorDetailSchema, ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { bounded, type Logger } from "../runtime/index.js";
import { sleepUnlessAborted } from "./backoff.js";
import { RuntimeRemovedError, type RuntimeConnection, waitUntilReady } from "./runtime-connection.js";
import type { RuntimeDirectory } from "./runtime-directory.js";
import { StreamRetry } from "./stream-retry.js";
import { fromUpstream, runtimeRemoved, typed, unknownRuntime } from "./upstream-errors.js";

/** How the relay reads and resumes one kind of watch stream. */
export interface ResumableWatch<M> {
  /** Opens the upstream stream after `cursor` ("" = at the snapshot). */
  open(connection: RuntimeConnection, cursor: string, signal: AbortSignal): AsyncIterable<M>;
  /** The last durable cursor a message's events or heartbeat carry, if any. */
  cursorOf(message: M): string | undefined;
  /** Whether the message carries events: what proves an opened stream healthy (a snapshot or heartbeat does not). */
  hasEvents(message: M): boolean;
  /**
   * The snapshot's cursor, if the message holds one. It is a resume point
   * only for a stream opened without a cursor: with one, the stored events
   * after that cursor follow the snapshot.
   */
  snapshotCursor(message: M): string | undefined;
  /** The message without its snapshot (a resumed upstream stream opens with one the client must not see twice); undefined when nothing is left. */
  withoutSnapshot(message: M): M | undefined;
  /** A heartbeat carrying `cursor`, sent while the upstream is being resumed. */
  heartbeat(cursor: string): M;
  /**
   * A record of what one client was shown, for a watch whose snapshot holds
   * state that reaches a watcher live only (WatchWorker: output, a
   * quarantined worker's last changes); absent when every change is a
   * replayed durable event (WatchRuntime).
   */
  shown?(): ShownState<M>;
}

/** What a relayed client was shown, so that a resumed upstream's snapshot is not lost on it (worker-watch-catch-up.ts). */
export interface ShownState<M> {
  /** Notes a message relayed to the client (the first one holds its snapshot). */
  note(message: M): void;
  /**
   * The live events that bring the client to what the snapshot in `message`
   * shows, as one message (undefined when it shows that already). Called
   * once the replay that follows that snapshot has been relayed. It throws,
   * the record unchanged, when what it must read from the Runtime cannot be
   * read; the relay then resumes and calls it again.
   */
  catchUp(message: M, connection: RuntimeConnection, signal: AbortSignal): Promise<M | undefined>;
}

/** Options for {@link relayWatch}. */
export interface RelayOptions {
  /** How often the client gets a heartbeat while the Runtime is away. */
  heartbeatMs: number;
  logger: Logger;
}

/**
 * Relays a watch from one Runtime and survives the Runtime going away: on
 * any upstream failure (a cut connection, a Runtime restart, a graceful
 * shutdown, SUBSCRIBER_TOO_SLOW) it waits until the Runtime is READY again,
 * sending the client heartbeats with its last cursor meanwhile (after a
 * backoff that resets only once a stream proves healthy: stream-retry.ts),
 * and resumes
 * the upstream watch after the last durable cursor it relayed (a clean end
 * of the embedded Runtime's watch is relayed as it is: that Runtime closes
 * only with its Backend). Cursors are
 * the Runtime's own, so the client sees every durable event exactly once
 * and can itself resume through this Backend or directly. The re-sent
 * snapshot of a resumed upstream is not relayed (a stream has one, first),
 * but it is not lost either: once the durable events replayed after it
 * have been relayed (the relay's cursor reaches the snapshot's), the client
 * gets the live events that take it from what it was shown to what the
 * snapshot shows ({@link ShownState}): output streamed and changes told
 * live only while the upstream was away. A typed rejection of the watch
 * itself (NOT_FOUND, CURSOR_EXPIRED, ...) ends the stream with that error,
 * as does the NOT_FOUND a Runtime ends a deleted worker's watch with (it is
 * not a cut: the watch is not opened again); removing the Runtime ends it
 * with NOT_FOUND.
 */
export async function* relayWatch<M>(
  directory: RuntimeDirectory,
  runtimeId: string,
  afterCursor: string,
  watch: ResumableWatch<M>,
  signal: AbortSignal,
  options: RelayOptions,
): AsyncGenerator<M> {
  const connection = directory.get(runtimeId);
  if (!connection) throw unknownRuntime(runtimeId, directory.ids());
  if (!connection.routable) {
    connection.demandAttempt();
    throw typed(Code.Unavailable, ErrorReason.RUNTIME_UNAVAILABLE, `runtime ${runtimeId} is unavailable`, runtimeId);
  }
  let cursor = afterCursor;
  let delivered = false;
  const shown = watch.shown?.();
  // Reset by a real event, not the snapshot or heartbeat every open starts with (stream-retry.ts).
  const retry = new StreamRetry({ initialMs: 100, maxMs: 5_000 });
  while (!signal.aborted) {
    if (connection.closedForShutdown) return;
    if (directory.get(runtimeId) !== connection) throw runtimeRemoved(runtimeId);
    const generation = connection.routeGeneration;
    try {
      // A resumed upstream's snapshot, held until the replay after it has been relayed.
      let resumedAt: { message: M; cursor: string } | undefined;
      retry.opened();
      for await (const message of watch.open(connection, cursor, signal)) {
        const snapshotCursor = watch.snapshotCursor(message);
        if (delivered && shown && snapshotCursor !== undefined) resumedAt = { message, cursor: snapshotCursor };
        const out = delivered ? watch.withoutSnapshot(message) : message;
        cursor = watch.cursorOf(message) ?? (cursor === "" ? (snapshotCursor ?? "") : cursor);
        // Not while a catch-up is due: one that keeps failing must back off, not retry at the initial delay.
        if (resumedAt === undefined && watch.hasEvents(message)) retry.proved();
        if (out !== undefined) {
          delivered = true;
          shown?.note(out);
          yield out;
        }
        if (shown && resumedAt?.cursor === cursor) {
          // A failed read (the Runtime unreachable again, a deadline) is an upstream failure like any other:
          // resumed after the backoff, with a newer snapshot to catch up to.
          const catchUp = await shown.catchUp(resumedAt.message, connection, signal);
          resumedAt = undefined;
          if (catchUp !== undefined) yield catchUp;
        }
      }
      // A Runtime ends a watch cleanly only when it closes (a deleted worker's ends with NOT_FOUND, thrown
      // below): the embedded one closes only with its Backend, so there is nothing to resume, and its own
      // clients see the same clean end; a remote one is restarting or going away, which is ridden out.
      if (connection.embedded) return;
      options.logger.info("relayed watch ended upstream; resuming", { runtime_id: runtimeId });
    } catch (error) {
      if (signal.aborted || connection.closedForShutdown) return;
      if (connection.isClosed) throw runtimeRemoved(runtimeId);
      const upstream = ConnectError.from(error);
      if (!delivered || !isResumable(upstream)) throw fromUpstream(upstream, runtimeId, options.logger, signal);
      connection.reportFailure(upstream, generation);
      options.logger.info("relayed watch lost its upstream; resuming", { runtime_id: runtimeId, cause: bounded(upstream.message) });
    }
    yield* waitForRuntime(connection, cursor, retry.next(), watch, signal, options);
  }
}

/** Waits at least `minMs`, then until the Runtime is READY, with heartbeats. */
async function* waitForRuntime<M>(
  connection: RuntimeConnection,
  cursor: string,
  minMs: number,
  watch: ResumableWatch<M>,
  signal: AbortSignal,
  options: RelayOptions,
): AsyncGenerator<M> {
  await sleepUnlessAborted(minMs, signal);
  const ready = waitUntilReady(connection, signal).then(
    () => "ready" as const,
    (error: unknown) => (error instanceof RuntimeRemovedError ? ("removed" as const) : ("aborted" as const)),
  );
  for (;;) {
    const outcome = await Promise.race([ready, sleepUnlessAborted(options.heartbeatMs, signal).then(() => "beat" as const)]);
    if (outcome === "removed" && !connection.closedForShutdown) throw runtimeRemoved(connection.runtimeId);
    if (outcome !== "beat" || signal.aborted) return;
    yield watch.heartbeat(cursor);
  }
}

/** Upstream failures the relay rides out: anything but a typed rejection of the watch itself. */
function isResumable(error: ConnectError): boolean {
  const detail = error.findDetails(ErrorDetailSchema)[0];
  if (!detail) return error.code !== Code.Unauthenticated;
  return detail.reason === ErrorReason.SUBSCRIBER_TOO_SLOW || detail.reason === ErrorReason.RUNTIME_DRAINING;
}
