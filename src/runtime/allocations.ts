import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { AllocationMode, AllocationSchema, type Allocation } from "../../gen/worker_runtime/v1/runtime_pb.js";
import type { Worker } from "../../gen/worker_runtime/v1/worker_pb.js";
import { RuntimeError } from "./errors.js";

/**
 * Workspace leases. A write-capable Worker holds an exclusive lease on its
 * workspace path, so two Workers never write the same files; readers share.
 * Paths are root-relative ("" = the whole root), compared by segments.
 */
export class AllocationManager {
  private readonly leases: Allocation[] = [];

  /** Takes a lease, or throws ALLOCATION_CONFLICT naming the holder. */
  acquire(holder: WorkerRef, { root, path, mode, mountName }: Lease, now: Date): Allocation {
    if (mode === AllocationMode.WRITE) {
      const clash = this.leases.find(
        (lease) =>
          lease.mode === AllocationMode.WRITE &&
          lease.root === root &&
          lease.holder?.workerId !== holder.workerId &&
          pathsOverlap(lease.path, path),
      );
      if (clash) {
        throw new RuntimeError(
          Code.FailedPrecondition,
          ErrorReason.ALLOCATION_CONFLICT,
          `${root}:${path || "/"} overlaps ${clash.root}:${clash.path || "/"}, held for writing by worker ${clash.holder?.workerId}${clash.mountName ? ` (its mount "${clash.mountName}")` : ""}`,
          { holder_worker_id: clash.holder?.workerId ?? "", root: clash.root, path: clash.path },
        );
      }
    }
    const lease = create(AllocationSchema, { holder, root, path, mode, mountName, acquiredAt: timestampFromDate(now) });
    this.leases.push(lease);
    return lease;
  }

  /** Takes every lease of `leases`, or none: on a conflict those taken are released and it is thrown. */
  acquireAll(holder: WorkerRef, leases: readonly Lease[], now: Date): void {
    const taken: Allocation[] = [];
    try {
      for (const lease of leases) taken.push(this.acquire(holder, lease, now));
    } catch (error) {
      for (const lease of taken) this.leases.splice(this.leases.indexOf(lease), 1);
      throw error;
    }
  }

  /** Releases every lease a worker holds. */
  release(workerId: string): void {
    for (let i = this.leases.length - 1; i >= 0; i--) {
      if (this.leases[i]?.holder?.workerId === workerId) this.leases.splice(i, 1);
    }
  }

  /** All leases in the order they were taken. */
  list(): readonly Allocation[] {
    return this.leases;
  }
}

/** A lease a worker needs: where, how, and for which mount ("" for the workspace). */
export interface Lease {
  root: string;
  path: string;
  mode: AllocationMode;
  mountName: string;
}

/**
 * The leases a worker holds while it is not stopped: its workspace's (WRITE
 * when it has a capability that writes, else READ) and each mount's (WRITE
 * when writable, else READ: a read-only mount is never written through).
 */
export function leasesOf(worker: Worker, writeCapable: boolean): Lease[] {
  const workspace = worker.workspace;
  return [
    ...(workspace
      ? [{ root: workspace.root, path: workspace.path, mode: writeCapable ? AllocationMode.WRITE : AllocationMode.READ, mountName: "" }]
      : []),
    ...worker.mounts.map((mount) => ({
      root: mount.root,
      path: mount.path,
      mode: mount.writable ? AllocationMode.WRITE : AllocationMode.READ,
      mountName: mount.name,
    })),
  ];
}

/** Whether two root-relative paths are the same or one contains the other. */
export function pathsOverlap(a: string, b: string): boolean {
  if (a === "" || b === "" || a === b) return true;
  return a.startsWith(`${b}/`) || b.startsWith(`${a}/`);
}
