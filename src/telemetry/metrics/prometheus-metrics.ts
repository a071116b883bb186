import type { Interceptor } from "@connectrpc/connect";
import { collectDefaultMetrics, Histogram, Registry } from "prom-client";
import type { RuntimeConnection } from "../../backend/index.js";
import type { Runtime, RuntimeMetrics } from "../../runtime/index.js";
import { BackendRuntimeMetrics } from "./backend-runtime-metrics.js";
import { BUCKETS } from "./buckets.js";
import { startMetricsServer, type MetricsServer } from "./metrics-server.js";
import { createRpcMetricsInterceptor } from "./rpc-metrics-interceptor.js";
import { registerRuntimeGauges } from "./runtime-gauges.js";
import { RuntimeRecorder } from "./runtime-recorder.js";

/**
 * Everything a process exposes to Prometheus, in one registry of its own
 * (never prom-client's global one, so two in one process, as in tests, do
 * not collide): process metrics, the core's figures through
 * {@link runtime}, RPC durations through {@link rpcInterceptor}, and what
 * {@link observeRuntime} and {@link observeBackend} read when scraped.
 * Nothing of it exists unless a process asks for metrics.
 */
export class PrometheusMetrics {
  readonly registry = new Registry();
  /** Pass as `RuntimeOptions.metrics` (and the file store's `metrics`). */
  readonly runtime: RuntimeMetrics;
  /** Pass in `RuntimeServerOptions.interceptors`: RPC duration by method and code. */
  readonly rpcInterceptor: Interceptor;
  private backend: BackendRuntimeMetrics | undefined;

  constructor() {
    collectDefaultMetrics({ register: this.registry });
    this.runtime = new RuntimeRecorder(this.registry);
    const rpc = new Histogram({
      name: "rpc_server_call_duration_seconds",
      help: "Served RPCs until the response (streams: until the stream ends), by method and gRPC code (OTel rpc.server.call.duration).",
      labelNames: ["rpc_method", "rpc_response_status_code"],
      buckets: [...BUCKETS.rpcSeconds],
      registers: [this.registry],
    });
    this.rpcInterceptor = createRpcMetricsInterceptor(rpc);
  }

  /** Workers and watchers of `runtime`, read at each scrape. */
  observeRuntime(runtime: Runtime): void {
    registerRuntimeGauges(this.registry, runtime);
  }

  /**
   * A Backend's Runtimes: health read at each scrape from `connections`;
   * returns the per-Runtime client interceptors for `BackendOptions.runtimeInterceptors`.
   */
  observeBackend(connections: () => Iterable<RuntimeConnection>): (runtimeId: string) => Interceptor[] {
    this.backend ??= new BackendRuntimeMetrics(this.registry, connections);
    const backend = this.backend;
    return (runtimeId) => [backend.interceptor(runtimeId)];
  }

  /** Serves `GET /metrics` on its own plain HTTP listener. */
  serve(host: string, port: number): Promise<MetricsServer> {
    return startMetricsServer(this.registry, host, port);
  }
}
