import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { AllocationMode, AllocationSchema, type Allocation } from "../../gen/worker_runtime/v1/runtime_pb.js";
import { RuntimeError } from "./errors.js";

/**
 * Workspace leases. A write-capable Worker holds an exclusive lease on its
 * workspace path, so two Workers never write the same files; readers share.
 * Paths are root-relative ("" = the whole root), compared by segments.
 */
export class AllocationManager {
  private readonly leases: Allocation[] = [];

  /** Takes a lease, or throws ALLOCATION_CONFLICT naming the holder. */
  acquire(holder: WorkerRef, root: string, path: string, mode: AllocationMode, now: Date): Allocation {
    if (mode === AllocationMode.WRITE) {
      const clash = this.leases.find(
        (lease) =>
          lease.mode === AllocationMode.WRITE &&
          lease.root === root &&
          lease.holder?.workerId !== holder.workerId &&
          overlaps(lease.path, path),
      );
      if (clash) {
        throw new RuntimeError(
          Code.FailedPrecondition,
          ErrorReason.ALLOCATION_CONFLICT,
          `workspace ${root}:${path || "/"} overlaps ${clash.root}:${clash.path || "/"}, held for writing by worker ${clash.holder?.workerId}`,
          { holder_worker_id: clash.holder?.workerId ?? "", root: clash.root, path: clash.path },
        );
      }
    }
    const lease = create(AllocationSchema, { holder, root, path, mode, acquiredAt: timestampFromDate(now) });
    this.leases.push(lease);
    return lease;
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

/** Whether two root-relative paths are the same or one contains the other. */
function overlaps(a: string, b: string): boolean {
  if (a === "" || b === "" || a === b) return true;
  return a.startsWith(`${b}/`) || b.startsWith(`${a}/`);
}
