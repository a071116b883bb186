import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import type { WorkerEvent, WorkerSnapshot } from "../../gen/worker_runtime/v1/events_pb.js";
import type { WatchWorkerResponse } from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import type { Api } from "./api.js";
import { connectionLost, cursorLost, reasonOf, watchRefusedText } from "./describe-error.js";
import { untilHidden, whenVisible } from "./visibility.js";

/** What a chat hears from {@link watchWorker}. */
export interface WorkerWatchHandlers {
  /** Every message as it arrives, before its parts (the raw event view). */
  message(message: WatchWorkerResponse): void;
  snapshot(snapshot: WorkerSnapshot): void;
  event(event: WorkerEvent): void;
  /** The first message of a fresh watch was handled: the newest history is read now, so nothing committed between is missed. */
  started(): Promise<void>;
  /** The cursor can no longer be resumed from: what is shown is dropped, and a fresh snapshot follows. */
  resync(): void;
  /** The connection was lost and is being tried again (true), or is back (false). */
  reconnecting(lost: boolean): void;
  /**
   * The watch was refused (the reason in words: the Backend wants its token,
   * or the server's own message), or works again or lost its connection
   * instead (undefined): a refusal is never left standing once it no longer holds.
   */
  refused(text: string | undefined): void;
  /** The worker is gone: deleted while watched (`seen`), or never there. Nothing to reconnect to. */
  gone(seen: boolean): void;
}

/**
 * Watches one worker until `signal` aborts or the worker is gone: WatchWorker
 * resumed from its last cursor after any drop (with a backoff), none held
 * while the tab is hidden, and started afresh from a snapshot when the
 * cursor is lost.
 */
export async function watchWorker(api: Api, ref: WorkerRef, signal: AbortSignal, on: WorkerWatchHandlers): Promise<void> {
  let cursor = "";
  let attempt = 0;
  let loaded = false;
  /**
   * The last try was refused, not cut: the chat says why instead of
   * "Reconnecting…", and keeps trying. A missing token (the sidebar asks for
   * it; the next try sends it) is tried again soon; any other refusal (the
   * worker's watcher slots full, a failed precondition, an internal error)
   * after a longer backoff, since retrying rarely mends it at once.
   */
  let refused: "token" | "other" | undefined;
  while (!signal.aborted) {
    // A hidden tab holds no connection (visibility.ts): it resumes from its cursor once shown.
    await whenVisible(signal);
    if (signal.aborted) return;
    const connection = untilHidden(signal);
    try {
      const request = { worker: ref, afterCursor: cursor };
      for await (const message of api.observation.watchWorker(request, { signal: connection.signal })) {
        attempt = 0;
        on.reconnecting(false);
        if (refused) on.refused(undefined);
        refused = undefined;
        on.message(message);
        if (message.snapshot) {
          on.snapshot(message.snapshot);
          // Only a fresh watch starts at the snapshot. A resumed one keeps its cursor until the replayed
          // events behind the snapshot arrive: cut before them, it must ask for them again, not skip them.
          if (message.snapshot.cursor && !cursor) cursor = message.snapshot.cursor;
        }
        for (const event of message.events) {
          on.event(event);
          if (event.cursor) cursor = event.cursor;
        }
        if (message.heartbeat?.cursor) cursor = message.heartbeat.cursor;
        if (!loaded) {
          loaded = true;
          await on.started();
        }
      }
      // The server ended the stream cleanly: the Backend is closing, so reconnect, shown as one. (A
      // deleted worker's watch ends with NOT_FOUND instead, handled below.)
    } catch (error) {
      if (signal.aborted) return;
      if (connection.signal.aborted) continue;
      if (cursorLost(error)) {
        // Start again from a fresh snapshot and the newest page.
        cursor = "";
        loaded = false;
        on.resync();
        continue;
      }
      const reason = reasonOf(error);
      if (reason === ErrorReason.NOT_FOUND) {
        // Deleted while watched (the watch's end says so), or never there: only a worker this chat has seen can be "deleted".
        on.reconnecting(false);
        on.gone(loaded);
        return;
      }
      if (connectionLost(error)) {
        // The banner says it now; a refusal from before no longer holds.
        if (refused) on.refused(undefined);
        refused = undefined;
      } else {
        refused = reason === ErrorReason.UNAUTHENTICATED ? "token" : "other";
        on.refused(watchRefusedText(error));
      }
    } finally {
      connection.dispose();
    }
    if (signal.aborted) return;
    on.reconnecting(refused === undefined);
    const [first, most] = refused === "other" ? [1_000, 15_000] : [250, 5_000];
    const delay = Math.min(most, first * 2 ** attempt) * (0.5 + Math.random() / 2);
    attempt++;
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
}
