import type { RuntimeError } from "./errors.js";

/**
 * Where a worker's delete stands (see {@link PendingDelete}): `unanswered`
 * when the store's delete call did not answer within the runtime's bound;
 * DeleteWorker has been answered, but the call may still succeed.
 */
type DeleteState = "under-way" | "deleted" | "kept" | "unanswered";

/**
 * A worker's delete under way, as the worker's streams and reads see it.
 * Its NOT_FOUND is decided when the delete begins, so a stream that meets
 * the delete's effects (its run CANCELLED by the delete's stop, its stored
 * events going away) knows the reason; but the stream is told only once
 * the store's delete has succeeded. A delete that fails in the store leaves
 * the worker there, and such a stream ends with that failure instead, typed
 * and not claiming the worker is gone, so its client retries or resumes.
 * A store call that does not answer in time is such a failure, until it
 * answers: a late success deletes the worker after all.
 */
export class PendingDelete {
  /** What a stream that met the delete ends with: {@link deleted} once the store deleted the worker, or the failure that kept it. */
  readonly outcome: Promise<RuntimeError>;
  private settle: (error: RuntimeError) => void = () => {};
  private state: DeleteState = "under-way";
  /** What a read that met the delete answers while its store call has not answered. */
  private readsUnavailable: RuntimeError | undefined;

  constructor(
    /** The worker's NOT_FOUND (errors.ts, `workerDeleted`). */
    readonly deleted: RuntimeError,
  ) {
    this.outcome = new Promise((resolve) => (this.settle = resolve));
  }

  /** The store deleted the worker: streams end with {@link deleted}. */
  succeeded(): void {
    this.state = "deleted";
    this.settle(this.deleted);
  }

  /** The delete failed and the worker stays: streams that met it end with `error`. */
  failed(error: RuntimeError): void {
    this.state = "kept";
    this.settle(error);
  }

  /**
   * The store's delete call did not answer in time: as {@link failed}, but
   * until {@link answeredLate} it may still delete the worker. Streams that
   * met it end with `error`; a read that fails meanwhile answers
   * `readError` (it cannot tell a bad request from the delete's effect on
   * the store, so it says to retry).
   */
  unanswered(error: RuntimeError, readError: RuntimeError): void {
    this.state = "unanswered";
    this.readsUnavailable = readError;
    this.settle(error);
  }

  /** The store's call that did not answer in time has answered: it deleted the worker, or it failed and the worker stays. */
  answeredLate(deleted: boolean): void {
    this.state = deleted ? "deleted" : "kept";
  }

  /**
   * Whether a read of the worker's stored state may find the worker gone
   * because of this delete: while it is under way (the store stops knowing
   * the worker part-way through), while its store call has not answered,
   * and once it has deleted the worker; not once it failed, the worker
   * kept whole.
   */
  get mayHideWorker(): boolean {
    return this.state !== "kept";
  }

  /** What a read that met the delete answers once {@link outcome} is known: NOT_FOUND once the worker is deleted (a late success too), else the outcome. */
  answer(outcome: RuntimeError): RuntimeError {
    if (this.state === "deleted") return this.deleted;
    return this.state === "unanswered" && this.readsUnavailable ? this.readsUnavailable : outcome;
  }
}

/** What carries a worker's delete mark: its event stream (event-stream.ts). */
export interface DeleteMarked {
  readonly endingWith: PendingDelete | undefined;
}

/**
 * Reads a worker's stored state (transcript, runs, events). Part-way
 * through a delete the store stops knowing the worker while the catalog
 * still lists it (until the store's delete succeeds), and such a read
 * failed with the store's "unknown worker" (INTERNAL), or found a gap
 * (`whole` says whether a result is whole). It answers with the delete's
 * outcome instead: NOT_FOUND once the worker is deleted; once the delete
 * failed and the worker stays, the read is made again and answers as if
 * the delete had never begun.
 */
export async function readOfWorker<T>(
  events: DeleteMarked,
  read: () => Promise<T>,
  whole: (result: T) => boolean = () => true,
): Promise<T> {
  const during = hidingDelete(events);
  let result: T;
  try {
    result = await read();
  } catch (error) {
    const deleting = during ?? hidingDelete(events);
    if (!deleting) throw error;
    return afterDelete(deleting, read);
  }
  if (whole(result)) return result;
  const deleting = during ?? hidingDelete(events);
  return deleting ? afterDelete(deleting, read) : result;
}

/**
 * Opens a watch of a worker: like {@link readOfWorker}, an opening that
 * fails part-way through the worker's delete (the resume point is checked
 * against the store) waits for the delete's outcome, then ends with
 * NOT_FOUND, or opens again once the delete failed. The wait holds nothing
 * and ends with `signal`.
 */
export function watchOfWorker<T>(events: DeleteMarked, open: () => AsyncGenerator<T>, signal: AbortSignal): AsyncGenerator<T> {
  const during = hidingDelete(events);
  try {
    return open();
  } catch (error) {
    const deleting = during ?? hidingDelete(events);
    if (!deleting) throw error;
    return (async function* () {
      let stop = (): void => {};
      const aborted = new Promise<"aborted">((resolve) => {
        stop = () => resolve("aborted");
        signal.addEventListener("abort", stop, { once: true });
      });
      try {
        if (signal.aborted || (await Promise.race([deleting.outcome, aborted])) === "aborted") return;
      } finally {
        signal.removeEventListener("abort", stop);
      }
      yield* await afterDelete(deleting, async () => open());
    })();
  }
}

/** The worker's delete, if it may be why a read of its stored state failed. */
function hidingDelete(events: DeleteMarked): PendingDelete | undefined {
  const deleting = events.endingWith;
  return deleting?.mayHideWorker ? deleting : undefined;
}

/** Once `deleting` settles: its NOT_FOUND, or `again` when it failed and the worker stays. */
async function afterDelete<T>(deleting: PendingDelete, again: () => Promise<T>): Promise<T> {
  const outcome = await deleting.outcome;
  if (deleting.mayHideWorker) throw deleting.answer(outcome);
  return again();
}
