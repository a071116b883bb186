import { create } from "@bufbuild/protobuf";
import { type WorkerRef, WorkerRefSchema } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import type { Worker } from "../../gen/worker_runtime/v1/worker_pb.js";
import { type AllocationManager, type Lease, leasesOf } from "./allocations.js";
import { RuntimeError } from "./errors.js";
import type { ExecutionOffer } from "./execution-offer.js";
import { type LookupAsker, outsideRootError, type Place } from "./host-locations.js";
import { MAX_UNANSWERED_LOOKUPS } from "./unanswered-lookups.js";

/**
 * How many restored workers have their directories located at once. One
 * after another, start-up took a lookup's time per worker; all at once, a
 * hung mount could take every thread of libuv's pool before the first
 * deadline. No more than requests may leave unanswered; lookups in one root
 * still go one at a time (host-locations.ts, LookupAsker).
 */
const RESTORE_LOCATING = MAX_UNANSWERED_LOOKUPS;

/**
 * The leases a worker needs (allocations.ts), each located on the host
 * once, so CreateWorker's mounts check and its leases share one lookup.
 * UNAVAILABLE HOST_PATH_UNAVAILABLE when the host's file system does not
 * answer in time (HostLocations.locate).
 */
export async function locatedLeases(worker: Worker, offer: ExecutionOffer, asker: LookupAsker = "request"): Promise<(Lease & Place)[]> {
  const wanted = leasesOf(worker, offer.needsWriteLease(worker.capabilities));
  const hosts = await offer.locations.locate(wanted, asker);
  return wanted.map((lease, i) => ({ ...lease, hostPath: hosts[i] ?? "" }));
}

/**
 * A restored worker's leases as located, or why it may not take them: not
 * located in time (HOST_PATH_UNAVAILABLE), or a directory now leads out of
 * its root through a symlink (WORKSPACE_DENIED).
 */
type Restored = { leases: Lease[] } | { unlocated: RuntimeError } | { outside: RuntimeError };

/** Refusals that a restored worker's next run request checks again (its directories may answer, or lead back in, by then). */
const CHECKED_AGAIN: readonly ErrorReason[] = [ErrorReason.HOST_PATH_UNAVAILABLE, ErrorReason.WORKSPACE_DENIED];

/**
 * The leases of restored workers. Taken at start-up, each worker's on its
 * own: one it cannot take (a conflict, after a root or symlink changed
 * while the runtime was down) is `warn`ed as `allocation.restore_conflict`
 * and the worker's runs are refused until it is stopped
 * (AllocationManager.checkHeld). Directories not located in time (a hung
 * mount at start-up: whether its write lease would conflict is unknown) are
 * `warn`ed as `allocation.host_path_unavailable`, and located again when a
 * run is asked of the worker ({@link checkRunnable}): a mount that answers
 * again gives it its leases, so it is not refused for its life. A worker
 * whose workspace or mount now leads out of its root through a symlink
 * (re-pointed while the runtime was down) takes none of its leases (one on
 * the directory outside could deny the worker that directory belongs to),
 * is `warn`ed as `allocation.outside_root`, and its runs are refused
 * FAILED_PRECONDITION WORKSPACE_DENIED, as CreateWorker would refuse it,
 * until a run asked of it finds it back inside.
 */
export class RestoredLeases {
  /** Worker id → its lookup again, in flight: concurrent runs asked of it share one. */
  private readonly relocating = new Map<string, Promise<void>>();

  constructor(
    private readonly offer: ExecutionOffer,
    private readonly allocations: AllocationManager,
    private readonly warn: (workerId: string, code: string, message: string) => void,
    private readonly tell: (workerId: string, code: string, message: string) => void,
  ) {}

  /**
   * Takes restored workers' leases: located {@link RESTORE_LOCATING} workers
   * at a time (each worker's directories one after another), then taken in
   * the workers' order, so which of two conflicting leases is kept does not
   * depend on which lookup answered first.
   */
  async restore(workers: readonly Worker[]): Promise<void> {
    const located: Restored[] = new Array(workers.length);
    let next = 0;
    const locateNext = async (): Promise<void> => {
      for (let i = next++; i < workers.length; i = next++) {
        const worker = workers[i] as Worker;
        located[i] = await this.locate(worker, "restore");
      }
    };
    await Promise.all(Array.from({ length: Math.min(RESTORE_LOCATING, workers.length) }, locateNext));
    for (const [i, worker] of workers.entries()) {
      const result = located[i];
      if (result) this.take(worker, result);
    }
  }

  /**
   * Before a run of `worker` is admitted (SendInput, StreamInput,
   * ResolveApproval): one restored without its leases because its
   * directories did not answer locates them again, and takes its leases if
   * they answer now; throws FAILED_PRECONDITION (HOST_PATH_UNAVAILABLE, or
   * ALLOCATION_CONFLICT) while it holds none.
   */
  async checkRunnable(worker: Worker): Promise<void> {
    const workerId = worker.ref?.workerId ?? "";
    const refusal = this.allocations.refusalOf(workerId);
    if (refusal !== undefined && CHECKED_AGAIN.includes(refusal.reason)) {
      let pending = this.relocating.get(workerId);
      if (!pending) {
        pending = this.relocate(worker).finally(() => this.relocating.delete(workerId));
        this.relocating.set(workerId, pending);
      }
      await pending;
    }
    this.allocations.checkHeld(workerId);
  }

  /** Locates an unlocated worker's directories again; a worker stopped meanwhile (its refusal gone) takes nothing. */
  private async relocate(worker: Worker): Promise<void> {
    const workerId = worker.ref?.workerId ?? "";
    const before = this.allocations.refusalOf(workerId);
    const result = await this.locate(worker, "request");
    if (this.allocations.refusalOf(workerId) !== before) return;
    if (!("leases" in result)) {
      this.refuse(worker.ref ?? create(WorkerRefSchema), result);
      return;
    }
    this.take(worker, result);
    // Closes the start-up warning in the log, unless the leases conflict now (warned by take).
    if (this.allocations.refusalOf(workerId) !== undefined) return;
    if (before?.reason === ErrorReason.WORKSPACE_DENIED)
      this.tell(
        workerId,
        "allocation.inside_root",
        "its directories lead inside their roots again: its leases are taken and its runs admitted",
      );
    else this.tell(workerId, "allocation.host_path_located", "its directories answered again: its leases are taken and its runs admitted");
  }

  /** Records why a restored worker takes no lease, its runs refused until a run asked of it finds otherwise. */
  private refuse(ref: WorkerRef, result: Exclude<Restored, { leases: Lease[] }>): void {
    if ("unlocated" in result) this.allocations.restoreUnlocated(ref, result.unlocated);
    else
      this.allocations.restoreRefused(
        ref,
        result.outside,
        "its runs are refused until its directories lead inside their roots again, or stop it",
      );
  }

  /** The worker's leases located, or the HOST_PATH_UNAVAILABLE that says why not (anything else is thrown). */
  private locate(worker: Worker, asker: LookupAsker): Promise<Restored> {
    const checked = async (): Promise<Restored> => {
      const leases = await locatedLeases(worker, this.offer, asker);
      const outside = await this.offer.locations.outsideRoot(leases, asker);
      return outside === undefined ? { leases } : { outside: outsideRootError(outside) };
    };
    return checked().catch((error: unknown): Restored => ({ unlocated: unlocatedError(error) }));
  }

  private take(worker: Worker, located: Restored): void {
    const ref = worker.ref ?? create(WorkerRefSchema);
    if ("unlocated" in located) {
      this.refuse(ref, located);
      const until = "its runs are refused until they answer (looked for again when a run is asked) or it is stopped";
      this.warn(ref.workerId, "allocation.host_path_unavailable", `${located.unlocated.message}; ${until}`);
      return;
    }
    if ("outside" in located) {
      this.refuse(ref, located);
      const until =
        "it takes no lease and its runs are refused until it leads back inside (checked again when a run is asked) or it is stopped";
      this.warn(ref.workerId, "allocation.outside_root", `${located.outside.message}; ${until}`);
      return;
    }
    for (const conflict of this.allocations.restore(ref, located.leases, new Date()))
      this.warn(ref.workerId, "allocation.restore_conflict", `${conflict.message}; its runs are refused until it is stopped`);
  }
}

/** A lookup's HOST_PATH_UNAVAILABLE; anything else is thrown on. */
function unlocatedError(error: unknown): RuntimeError {
  if (error instanceof RuntimeError && error.reason === ErrorReason.HOST_PATH_UNAVAILABLE) return error;
  throw error;
}
