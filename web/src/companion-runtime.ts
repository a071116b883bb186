import { RuntimeHealth } from "../../gen/worker_runtime/v1/backend_pb.js";
import type { RegisteredRuntime } from "../../gen/worker_runtime/v1/runtime_registry_pb.js";
import type { Worker } from "../../gen/worker_runtime/v1/worker_pb.js";

/**
 * The runtime "New companion" creates its worker on. A READY remote runtime
 * when the Backend lists one: the embedded runtime lives in the memory of the
 * one Backend process that answered, so with several Backend replicas (as on
 * Kubernetes) the other replicas would not find the worker. Among the ready
 * remote runtimes, the one with the fewest of `workers` (ties: the first
 * listed). Without one, the embedded runtime (`npm start` alone); undefined
 * if the Backend lists neither.
 */
export function companionRuntime(runtimes: readonly RegisteredRuntime[], workers: readonly Worker[]): string | undefined {
  let best: { runtimeId: string; workers: number } | undefined;
  for (const runtime of runtimes) {
    if (runtime.embedded || runtime.health !== RuntimeHealth.READY) continue;
    const count = workers.filter((worker) => worker.ref?.runtimeId === runtime.runtimeId).length;
    if (!best || count < best.workers) best = { runtimeId: runtime.runtimeId, workers: count };
  }
  return best?.runtimeId ?? runtimes.find((runtime) => runtime.embedded)?.runtimeId;
}
