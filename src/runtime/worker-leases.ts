import { create } from "@bufbuild/protobuf";
import { WorkerRefSchema } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import type { Worker } from "../../gen/worker_runtime/v1/worker_pb.js";
import { type AllocationManager, type Lease, leasesOf } from "./allocations.js";
import { RuntimeError } from "./errors.js";
import type { ExecutionOffer } from "./execution-offer.js";
import type { Place } from "./host-locations.js";

/**
 * The leases a worker needs (allocations.ts), each located on the host
 * once, so CreateWorker's mounts check and its leases share one lookup.
 * UNAVAILABLE HOST_PATH_UNAVAILABLE when the host's file system does not
 * answer in time (HostLocations.locate).
 */
export async function locatedLeases(worker: Worker, offer: ExecutionOffer): Promise<(Lease & Place)[]> {
  const wanted = leasesOf(worker, offer.needsWriteLease(worker.capabilities));
  const hosts = await offer.locations.locate(wanted);
  return wanted.map((lease, i) => ({ ...lease, hostPath: hosts[i] ?? "" }));
}

/**
 * Takes a restored worker's leases. One it cannot take (a conflict, after a
 * root or symlink changed while the runtime was down), or directories not
 * located in time (a hung mount at start-up: whether its write lease would
 * conflict is unknown), is `warn`ed with a diagnostic code, and the worker's
 * runs are refused until it is stopped (AllocationManager.checkHeld).
 */
export async function restoreLeases(
  worker: Worker,
  offer: ExecutionOffer,
  allocations: AllocationManager,
  warn: (code: string, message: string) => void,
): Promise<void> {
  const ref = worker.ref ?? create(WorkerRefSchema);
  let leases: Lease[];
  try {
    leases = await locatedLeases(worker, offer);
  } catch (error) {
    if (!(error instanceof RuntimeError) || error.reason !== ErrorReason.HOST_PATH_UNAVAILABLE) throw error;
    allocations.restoreUnlocated(ref, error);
    warn("allocation.host_path_unavailable", error.message);
    return;
  }
  for (const conflict of allocations.restore(ref, leases, new Date())) warn("allocation.restore_conflict", conflict.message);
}
