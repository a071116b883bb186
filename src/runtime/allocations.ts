import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { AllocationMode, AllocationSchema, type Allocation } from "../../gen/worker_runtime/v1/runtime_pb.js";
import type { Worker } from "../../gen/worker_runtime/v1/worker_pb.js";
import { RuntimeError } from "./errors.js";
import { hostPathsOverlap, type Place } from "./host-locations.js";

/** A lease held: as listed (root and path as typed), and where it is on the host. */
interface Held {
  allocation: Allocation;
  hostPath: string;
  /** Order taken (1, 2, ...): where a listing resumes. */
  order: number;
}

/**
 * Workspace leases. A write-capable Worker holds an exclusive lease on its
 * workspace path, so two Workers never write the same files; readers share.
 * Leases meet where their directories meet on the host (symlinks resolved,
 * whatever root names them: host-locations.ts), checked when a lease is
 * taken (CreateWorker, restore). A symlink re-pointed later is not
 * re-checked: the tools' confinement to the worker's root is what holds at
 * use time.
 */
export class AllocationManager {
  private readonly leases: Held[] = [];
  private taken = 0;
  /** Restored workers without the leases they need: worker id → why their runs are refused, until they are stopped. */
  private readonly unleased = new Map<string, RuntimeError>();

  /** Takes a lease, or throws ALLOCATION_CONFLICT naming the holder and its root:path as typed. */
  acquire(holder: WorkerRef, { root, path, mode, mountName, hostPath }: Lease, now: Date): Allocation {
    if (mode === AllocationMode.WRITE) {
      const clash = this.leases.find(
        (lease) =>
          lease.allocation.mode === AllocationMode.WRITE &&
          lease.allocation.holder?.workerId !== holder.workerId &&
          hostPathsOverlap(lease.hostPath, hostPath),
      )?.allocation;
      if (clash) {
        throw new RuntimeError(
          Code.FailedPrecondition,
          ErrorReason.ALLOCATION_CONFLICT,
          `${root}:${path || "/"} overlaps ${clash.root}:${clash.path || "/"}, held for writing by worker ${clash.holder?.workerId}${clash.mountName ? ` (its mount "${clash.mountName}")` : ""}`,
          {
            holder_worker_id: clash.holder?.workerId ?? "",
            root: clash.root,
            path: clash.path,
            ...(clash.mountName ? { holder_mount_name: clash.mountName } : {}),
          },
        );
      }
    }
    const allocation = create(AllocationSchema, { holder, root, path, mode, mountName, acquiredAt: timestampFromDate(now) });
    this.leases.push({ allocation, hostPath, order: ++this.taken });
    return allocation;
  }

  /** Takes every lease of `leases`, or none: on a conflict those taken are released and it is thrown. */
  acquireAll(holder: WorkerRef, leases: readonly Lease[], now: Date): void {
    const taken: Allocation[] = [];
    try {
      for (const lease of leases) taken.push(this.acquire(holder, lease, now));
    } catch (error) {
      for (const allocation of taken)
        this.leases.splice(
          this.leases.findIndex((held) => held.allocation === allocation),
          1,
        );
      throw error;
    }
  }

  /**
   * Takes a restored worker's leases, each on its own (a conflict, after a
   * root or symlink changed while the runtime was down, costs only that
   * lease), and returns the conflicts. A worker that lost one has its runs
   * refused ({@link checkHeld}) until it is stopped. A worker restored
   * unlocated whose directories answer later comes here too, its earlier
   * refusal forgotten.
   */
  restore(holder: WorkerRef, leases: readonly Lease[], now: Date): RuntimeError[] {
    this.unleased.delete(holder.workerId);
    const conflicts: RuntimeError[] = [];
    for (const lease of leases) {
      try {
        this.acquire(holder, lease, now);
      } catch (error) {
        if (!(error instanceof RuntimeError)) throw error;
        conflicts.push(error);
      }
    }
    const first = conflicts[0];
    if (first) {
      const why = `worker ${holder.workerId} was restored without its write lease (${first.message}); its runs are refused: stop it, and create it again once the directory is free`;
      this.unleased.set(holder.workerId, new RuntimeError(first.code, first.reason, why, first.metadata));
    }
    return conflicts;
  }

  /**
   * Restores a worker whose directories could not be located in time
   * (`unlocated`: HOST_PATH_UNAVAILABLE) without any lease: whether its
   * write lease conflicts is unknown, so its runs are refused
   * (FAILED_PRECONDITION HOST_PATH_UNAVAILABLE) until its directories are
   * located (worker-leases.ts locates them again when a run is asked) or it
   * is stopped.
   */
  restoreUnlocated(holder: WorkerRef, unlocated: RuntimeError): void {
    this.restoreRefused(holder, unlocated, "its runs are refused until its directories answer, or stop it");
  }

  /**
   * Restores a worker without any lease because of `cause` (its reason and
   * metadata kept; a directory that now leads out of its root,
   * WORKSPACE_DENIED): its runs are refused FAILED_PRECONDITION, saying
   * `until` when that ends, until worker-leases.ts finds otherwise or it is
   * stopped.
   */
  restoreRefused(holder: WorkerRef, cause: RuntimeError, until: string): void {
    const why = `worker ${holder.workerId} was restored without its leases (${cause.message}); ${until}`;
    this.unleased.set(holder.workerId, new RuntimeError(Code.FailedPrecondition, cause.reason, why, cause.metadata));
  }

  /** Why a restored worker holds no lease it needs (its runs refused), or undefined when it holds them all. */
  refusalOf(workerId: string): RuntimeError | undefined {
    return this.unleased.get(workerId);
  }

  /** Refuses a run of a worker restored without a lease it needs: FAILED_PRECONDITION ALLOCATION_CONFLICT or HOST_PATH_UNAVAILABLE. */
  checkHeld(workerId: string): void {
    const refusal = this.unleased.get(workerId);
    if (!refusal) return;
    throw new RuntimeError(refusal.code, refusal.reason, refusal.message, refusal.metadata);
  }

  /** Releases every lease a worker holds (and forgets a lease it could not take). */
  release(workerId: string): void {
    this.unleased.delete(workerId);
    for (let i = this.leases.length - 1; i >= 0; i--) {
      if (this.leases[i]?.allocation.holder?.workerId === workerId) this.leases.splice(i, 1);
    }
  }

  /**
   * Up to `count` leases taken after the one numbered `after` (0: from the
   * first), in the order taken, each with its number; a released lease
   * shifts nothing a listing has not shown yet.
   */
  listAfter(after: number, count: number): { allocation: Allocation; order: number }[] {
    const start = this.leases.findIndex((held) => held.order > after);
    return start < 0 ? [] : this.leases.slice(start, start + count);
  }
}

/** A lease a worker needs: where as typed, where on the host, how, and for which mount ("" for the workspace). */
export interface Lease {
  root: string;
  path: string;
  mode: AllocationMode;
  mountName: string;
  hostPath: string;
}

/** A lease before it is located on the host, with the request field its directory came from. */
export type WantedLease = Omit<Lease, "hostPath"> & Place;

/**
 * The leases a worker holds while it is not stopped: its workspace's (WRITE
 * when it has a capability that writes, else READ) and each mount's (WRITE
 * when writable, else READ: a read-only mount is never written through).
 * Located on the host once (HostLocations.locate), they serve both the
 * mounts' overlap check and the leases.
 */
export function leasesOf(worker: Worker, writeCapable: boolean): WantedLease[] {
  const workspace = worker.workspace;
  const readOr = (write: boolean): AllocationMode => (write ? AllocationMode.WRITE : AllocationMode.READ);
  return [
    ...(workspace ? [{ root: workspace.root, path: workspace.path, mode: readOr(writeCapable), mountName: "", field: "workspace" }] : []),
    ...worker.mounts.map((mount, i) => ({
      root: mount.root,
      path: mount.path,
      mode: readOr(mount.writable),
      mountName: mount.name,
      field: `mounts[${i}]`,
    })),
  ];
}
