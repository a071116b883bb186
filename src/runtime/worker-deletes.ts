import { Code } from "@connectrpc/connect";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { RuntimeError, workerDeleted, workerNotDeleted } from "./errors.js";
import { PendingDelete } from "./pending-delete.js";
import type { RuntimeHealth } from "./runtime-health.js";
import { settlesWithin } from "./settles-within.js";
import type { RuntimeStore } from "./store.js";
import { typedStoreErrors } from "./store-errors.js";
import type { WorkerSession } from "./worker-session.js";

/** What deleting workers needs from the catalog. */
export interface WorkerDeletesInit {
  store: RuntimeStore;
  /** How long a delete waits for the store's answer (limits.flushTimeoutMs, as close waits for it). */
  storeBoundMs: number;
  /** Stops the worker (waiting for a StopWorker in progress) and releases its leases. */
  stop(session: WorkerSession): Promise<void>;
  /** Takes a worker the store has deleted out of the catalog (its leases and request id too) and publishes its removal. */
  forget(session: WorkerSession): void;
  /** Told of a store delete that fails or does not answer in time (the runtime is DEGRADED meanwhile). */
  health: Pick<RuntimeHealth, "storeResult" | "storeNotAnswering" | "storeAnswered">;
}

/**
 * Deleting workers: stop, then the store's delete, then the catalog and the
 * worker's streams (NOT_FOUND after the events they hold). A failure on
 * the way leaves the worker as the store has it (stopped, listed, readable)
 * and its streams open: nothing has told them it was deleted, and a
 * StreamInput whose run the stop ended gets the failure.
 *
 * The store's delete is waited for within a bound (a disk that stops
 * answering must not hang DeleteWorker and the worker's streams for good):
 * past it, DeleteWorker is UNAVAILABLE and the worker is kept as after a
 * failure, but the call goes on, and its answer decides. A late success
 * deletes the worker as a timely one does (the store no longer has it, so
 * keeping it would show a worker a restart would not); a late failure
 * leaves it kept. A delete repeated meanwhile waits on that same call
 * (bounded again) instead of piling another onto a store that does not
 * answer. A store that does not answer is the operator's problem as much
 * as the caller's: the runtime is DEGRADED, with a diagnostic, until the
 * call answers; a failed delete degrades it as any failed store write does.
 */
export class WorkerDeletes {
  /** Worker id → its delete in progress, which a second delete shares. */
  private readonly inProgress = new Map<string, Promise<void>>();
  /** Worker id → its store delete that did not answer within the bound, until it does. */
  private readonly unanswered = new Map<string, Promise<void>>();
  /** Workers whose delete has been completed (a late answer and a repeated delete may both succeed). */
  private readonly forgotten = new WeakSet<WorkerSession>();

  constructor(private readonly init: WorkerDeletesInit) {}

  /** Deletes the worker; a second delete while one is in progress waits for it and shares its outcome. */
  delete(session: WorkerSession): Promise<void> {
    const inProgress = this.inProgress.get(session.workerId);
    if (inProgress) return inProgress;
    const deleting = this.deleteNow(session).finally(() => this.inProgress.delete(session.workerId));
    this.inProgress.set(session.workerId, deleting);
    return deleting;
  }

  private async deleteNow(session: WorkerSession): Promise<void> {
    const { workerId } = session;
    // Decided before the runs end, so a StreamInput that sees its run end now knows why; told at the outcome.
    const pending = new PendingDelete(workerDeleted(workerId));
    session.events.announceEnd(pending);
    let unanswered = false;
    try {
      // Also waits for a StopWorker still in progress, so nothing is written after the delete.
      await this.init.stop(session);
      session.markDeleted();
      const call = this.storeDelete(workerId);
      if (!(await settlesWithin(call, this.init.storeBoundMs))) {
        const error = workerNotDeleted(workerId, storeDidNotAnswer(this.init.storeBoundMs));
        unanswered = true;
        this.init.health.storeNotAnswering(
          deletePath(workerId),
          `the store has not answered the delete of worker ${workerId} within ${this.init.storeBoundMs} ms; the runtime is degraded until it does`,
        );
        session.markDeleted(false);
        pending.unanswered(error, readsWhileUnanswered(workerId, this.init.storeBoundMs));
        call.then(
          () => this.answeredLate(session, pending, true),
          () => this.answeredLate(session, pending, false),
        );
        throw error;
      }
    } catch (error) {
      if (!unanswered) {
        session.markDeleted(false);
        pending.failed(workerNotDeleted(workerId, error));
      }
      throw error;
    }
    this.completed(session, pending);
  }

  /** The store's delete of the worker: the one that has not answered yet, if there is one, else a new call. */
  private storeDelete(workerId: string): Promise<void> {
    const outstanding = this.unanswered.get(workerId);
    if (outstanding) return outstanding;
    const call = typedStoreErrors(this.init.store.deleteWorker(workerId));
    this.unanswered.set(workerId, call);
    const done = (): void => {
      if (this.unanswered.get(workerId) === call) this.unanswered.delete(workerId);
      // After a failure's report, so a late failure leaves the runtime DEGRADED without a moment of SERVING.
      this.init.health.storeAnswered(deletePath(workerId));
    };
    // A success needs no report: the deleted worker's paths are forgotten with it.
    call.then(done, (error: unknown) => {
      this.init.health.storeResult(deletePath(workerId), error);
      done();
    });
    return call;
  }

  /** A store delete that did not answer in time has: a success deletes the worker now; a failure leaves it kept. */
  private answeredLate(session: WorkerSession, pending: PendingDelete, deleted: boolean): void {
    pending.answeredLate(deleted);
    if (!deleted) return;
    session.markDeleted();
    this.completed(session, pending);
  }

  /** The store deleted the worker: out of the catalog, and its streams end with NOT_FOUND after the events they hold. */
  private completed(session: WorkerSession, pending: PendingDelete): void {
    // Settled whoever completes first: a repeated delete's own mark may hold reads that met it.
    pending.succeeded();
    if (this.forgotten.has(session)) return;
    this.forgotten.add(session);
    this.init.forget(session);
    // Not the clean end of a shutdown: watchers get the last events, then NOT_FOUND, and need not ask why.
    session.events.closeAll(pending.deleted);
  }
}

/** The worker's store-health path for its delete (under the worker's prefix, so forgetting the worker clears it). */
function deletePath(workerId: string): string {
  return `worker:${workerId}:delete`;
}

/** What a failed read of a worker answers while the store has not answered its delete: retry later. */
function readsWhileUnanswered(workerId: string, boundMs: number): RuntimeError {
  return new RuntimeError(
    Code.Unavailable,
    ErrorReason.STORE_UNAVAILABLE,
    `worker ${workerId} cannot be read now: the store has not answered its delete (waited ${boundMs} ms); retry`,
    { worker_id: workerId, timeout_ms: String(boundMs) },
  );
}

/** A store call that did not answer within `boundMs` (a disk that stopped answering): retry later. */
function storeDidNotAnswer(boundMs: number): RuntimeError {
  return new RuntimeError(
    Code.Unavailable,
    ErrorReason.STORE_UNAVAILABLE,
    `the store did not answer within ${boundMs} ms; retry the delete`,
    { timeout_ms: String(boundMs) },
  );
}
