import { RuntimeHealth } from "../../gen/worker_runtime/v1/backend_pb.js";
import type { RegisteredRuntime } from "../../gen/worker_runtime/v1/runtime_registry_pb.js";
import type { Worker } from "../../gen/worker_runtime/v1/worker_pb.js";

/**
 * The runtime "New companion" creates its worker on: the embedded runtime
 * (SPEC §10) when it can run workers. When it cannot (no model provider
 * configured in the Backend's process), the ready remote runtime that can,
 * with the fewest of `workers` (ties: the first listed): this is also how a
 * replicated Backend (several processes behind one address, as on
 * Kubernetes) is meant to be run, its embedded runtimes left without a
 * provider, since a worker in one replica's memory is not found through the
 * others. Failing both, the embedded runtime still, so its typed refusal
 * ("no model provider configured") is what the reader sees; then any ready
 * remote one; undefined if the Backend lists none of these.
 */
export function companionRuntime(runtimes: readonly RegisteredRuntime[], workers: readonly Worker[]): string | undefined {
  const embedded = runtimes.find((runtime) => runtime.embedded);
  if (embedded && canRun(embedded)) return embedded.runtimeId;
  const ready = runtimes.filter((runtime) => !runtime.embedded && runtime.health === RuntimeHealth.READY);
  return fewestWorkers(ready.filter(canRun), workers) ?? embedded?.runtimeId ?? fewestWorkers(ready, workers);
}

/** Whether a runtime is ready and its last summary says it has an execution backend. */
function canRun(runtime: RegisteredRuntime): boolean {
  return runtime.health === RuntimeHealth.READY && runtime.summary?.capabilities?.executionAvailable === true;
}

function fewestWorkers(candidates: readonly RegisteredRuntime[], workers: readonly Worker[]): string | undefined {
  let best: { runtimeId: string; workers: number } | undefined;
  for (const runtime of candidates) {
    const count = workers.filter((worker) => worker.ref?.runtimeId === runtime.runtimeId).length;
    if (!best || count < best.workers) best = { runtimeId: runtime.runtimeId, workers: count };
  }
  return best?.runtimeId;
}
