import type { Interceptor } from "@connectrpc/connect";
import { Gauge, Histogram, type Registry } from "prom-client";
import { RuntimeHealth } from "../../../gen/worker_runtime/v1/backend_pb.js";
import type { RuntimeConnection } from "../../backend/index.js";
import { BUCKETS } from "./buckets.js";
import { createRpcMetricsInterceptor } from "./rpc-metrics-interceptor.js";

/** The health states a Backend shows per Runtime (RuntimeHealth without UNSPECIFIED), as label values. */
const HEALTH_STATES = [
  RuntimeHealth.READY,
  RuntimeHealth.CONNECTING,
  RuntimeHealth.UNAVAILABLE,
  RuntimeHealth.UNAUTHENTICATED,
  RuntimeHealth.INCOMPATIBLE,
];

/**
 * The Backend's view of its Runtimes: a health gauge per Runtime (one
 * series per state, 1 for the current one, read when scraped, so a removed
 * Runtime's series go away) and the latency of the Backend's unary calls to
 * each Runtime, through a client interceptor per connection.
 */
export class BackendRuntimeMetrics {
  private readonly calls: Histogram;
  /** The call series bound for each runtime id, so those of a removed Runtime can be dropped. */
  private readonly callSeries = new Map<string, Record<string, string>[]>();

  constructor(registry: Registry, connections: () => Iterable<RuntimeConnection>) {
    const dropRemoved = (live: ReadonlySet<string>): void => this.dropRemoved(live);
    // Registered before the histogram, so a scrape drops a removed Runtime's call series before writing them.
    new Gauge({
      name: "worker_runtime_backend_runtime_health",
      help: "Health of each Runtime the Backend routes to: 1 for its current state, 0 for the others.",
      labelNames: ["runtime_id", "state"],
      registers: [registry],
      collect() {
        this.reset();
        const live = new Set<string>();
        for (const connection of connections()) {
          live.add(connection.runtimeId);
          for (const state of HEALTH_STATES) {
            this.set({ runtime_id: connection.runtimeId, state: RuntimeHealth[state].toLowerCase() }, connection.health === state ? 1 : 0);
          }
        }
        dropRemoved(live);
      },
    });
    this.calls = new Histogram({
      name: "worker_runtime_backend_runtime_call_duration_seconds",
      help: "The Backend's unary calls to each Runtime (routed calls, fan-outs, health checks), by method and gRPC code.",
      labelNames: ["runtime_id", "rpc_method", "rpc_response_status_code"],
      buckets: [...BUCKETS.rpcSeconds],
      registers: [registry],
    });
  }

  /** The client interceptor for the transport to one Runtime. */
  interceptor(runtimeId: string): Interceptor {
    const onBind = (labels: Record<string, string>): void => {
      const series = this.callSeries.get(runtimeId);
      if (series) series.push(labels);
      else this.callSeries.set(runtimeId, [labels]);
    };
    return createRpcMetricsInterceptor(this.calls, { runtime_id: runtimeId }, { unaryOnly: true, onBind });
  }

  /**
   * Removes the call series of Runtimes no longer registered: ids come and
   * go (AddRuntime, DNS discovery), and a gone Runtime's latencies would
   * otherwise stay in every scrape for the life of the process.
   */
  private dropRemoved(live: ReadonlySet<string>): void {
    for (const [runtimeId, series] of this.callSeries) {
      if (live.has(runtimeId)) continue;
      for (const labels of series) this.calls.remove(labels);
      this.callSeries.delete(runtimeId);
    }
  }
}
