/**
 * Prometheus metrics (prom-client) for runtime and Backend processes: the
 * core's metrics seam recorded, RPC and per-Runtime call durations through
 * Connect interceptors, gauges read when scraped, process metrics, and the
 * `/metrics` listener. The core never imports this; the CLI wires it when
 * `--metrics-port` is given.
 */
export { PrometheusMetrics } from "./prometheus-metrics.js";
export { startMetricsServer, type MetricsServer } from "./metrics-server.js";
export { createRpcMetricsInterceptor } from "./rpc-metrics-interceptor.js";
