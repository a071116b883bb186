import { Gauge, type Registry } from "prom-client";
import type { Runtime } from "../../runtime/index.js";

/**
 * Gauges read from a Runtime when scraped (workers by status, live
 * watchers), so keeping them current costs nothing between scrapes.
 */
export function registerRuntimeGauges(registry: Registry, runtime: Runtime): void {
  new Gauge({
    name: "worker_runtime_workers",
    help: "Workers hosted, by status.",
    labelNames: ["status"],
    registers: [registry],
    collect() {
      const counts = runtime.getRuntime().workerCounts;
      this.set({ status: "idle" }, counts?.idle ?? 0);
      this.set({ status: "running" }, counts?.running ?? 0);
      this.set({ status: "stopped" }, counts?.stopped ?? 0);
      this.set({ status: "failed" }, counts?.failed ?? 0);
    },
  });
  new Gauge({
    name: "worker_runtime_watchers",
    help: "Live watch streams, by kind (worker = WatchWorker and StreamInput, runtime = WatchRuntime).",
    labelNames: ["stream"],
    registers: [registry],
    collect() {
      const stats = runtime.stats();
      this.set({ stream: "worker" }, stats.subscriptions - stats.runtimeSubscriptions);
      this.set({ stream: "runtime" }, stats.runtimeSubscriptions);
    },
  });
}
