import type { RuntimeError } from "./errors.js";

/**
 * A worker's delete under way, as the worker's streams see it. Its
 * NOT_FOUND is decided when the delete begins, so a stream that meets the
 * delete's effects (its run CANCELLED by the delete's stop, its stored
 * events going away) knows the reason; but the stream is told only once
 * the store's delete has succeeded. A delete that fails in the store leaves
 * the worker there, and such a stream ends with that failure instead, typed
 * and not claiming the worker is gone, so its client retries or resumes.
 */
export class PendingDelete {
  /** What a stream that met the delete ends with: {@link deleted} once the store deleted the worker, or the failure that kept it. */
  readonly outcome: Promise<RuntimeError>;
  private settle: (error: RuntimeError) => void = () => {};
  private keptBy: RuntimeError | undefined;

  constructor(
    /** The worker's NOT_FOUND (errors.ts, `workerDeleted`). */
    readonly deleted: RuntimeError,
  ) {
    this.outcome = new Promise((resolve) => (this.settle = resolve));
  }

  /** The store deleted the worker: streams end with {@link deleted}. */
  succeeded(): void {
    this.settle(this.deleted);
  }

  /** The delete failed and the worker stays: streams that met it end with `error`. */
  failed(error: RuntimeError): void {
    this.keptBy = error;
    this.settle(error);
  }

  /**
   * Whether the delete failed. The worker then stays, STOPPED, still marked
   * with this delete: a StreamInput that takes its run's CANCELLED only now
   * ends as the quicker ones did, and no run of a stopped worker ends later.
   */
  get kept(): boolean {
    return this.keptBy !== undefined;
  }
}

/**
 * Awaits a read of a worker's stored state (transcript, runs, events).
 * Part-way through a delete the store stops knowing the worker while the
 * catalog still lists it (until the store's delete succeeds), and such a
 * read failed with the store's "unknown worker" (INTERNAL). It answers as
 * the worker's streams end instead, with the delete's outcome: NOT_FOUND
 * once the worker is deleted, or the failure that kept it.
 */
export async function readOfWorker<T>(events: { readonly endingWith: PendingDelete | undefined }, read: Promise<T>): Promise<T> {
  try {
    return await read;
  } catch (error) {
    const deleting = events.endingWith;
    if (deleting && !deleting.kept) throw await deleting.outcome;
    throw error;
  }
}
