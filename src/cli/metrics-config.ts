import { isIP } from "node:net";
import type { MetricsServer, PrometheusMetrics } from "../telemetry/metrics/index.js";

/** The flags of a process that may expose metrics (part of RUNTIME_HOST_OPTIONS). */
export const METRICS_OPTIONS = {
  "metrics-port": { type: "string" },
  "metrics-host": { type: "string" },
} as const;

export const METRICS_USAGE = `  --metrics-port N  serve Prometheus metrics at http://HOST:N/metrics (0 = any free port; the
                 address is printed as "worker-runtime metrics URL"); without it no metrics are kept
  --metrics-host H  address of the metrics listener (default 127.0.0.1; it has no auth)`;

/** Thrown for bad metrics flags; the CLI shows it as a usage error. */
export class MetricsConfigError extends Error {
  override readonly name = "MetricsConfigError";
}

/** Where to serve metrics, from the flags; undefined when metrics are off. */
export interface MetricsListen {
  host: string;
  port: number;
}

/**
 * Reads --metrics-port and --metrics-host. Metrics are on only with a
 * port: the switch an operator (and the overhead bench) flips, and without
 * it nothing is registered or counted.
 */
export function metricsListenFromFlags(values: { "metrics-port"?: string; "metrics-host"?: string }): MetricsListen | undefined {
  const portText = values["metrics-port"];
  const host = values["metrics-host"];
  if (portText === undefined) {
    if (host !== undefined) throw new MetricsConfigError("--metrics-host needs --metrics-port");
    return undefined;
  }
  const port = Number(portText);
  if (!/^\d+$/.test(portText) || port > 65535) throw new MetricsConfigError("--metrics-port must be a port number 0-65535");
  if (host !== undefined && host !== "localhost" && isIP(host) === 0) {
    throw new MetricsConfigError("--metrics-host must be an IP address or localhost");
  }
  return { host: host ?? "127.0.0.1", port };
}

/** A process's metrics: the registry and its recorders, and the listener once started. */
export interface ProcessMetrics {
  readonly prometheus: PrometheusMetrics;
  readonly listen: MetricsListen;
}

/**
 * The metrics of a process started with these flags, or undefined when they
 * are off; prom-client is only loaded when they are on.
 */
export async function processMetricsFromFlags(values: {
  "metrics-port"?: string;
  "metrics-host"?: string;
}): Promise<ProcessMetrics | undefined> {
  const listen = metricsListenFromFlags(values);
  if (!listen) return undefined;
  const { PrometheusMetrics } = await import("../telemetry/metrics/index.js");
  return { prometheus: new PrometheusMetrics(), listen };
}

/** Starts the metrics listener and prints its URL (stdout, before the listening line). */
export async function serveMetrics(metrics: ProcessMetrics): Promise<MetricsServer> {
  const server = await metrics.prometheus.serve(metrics.listen.host, metrics.listen.port);
  process.stdout.write(`worker-runtime metrics http://${server.address}/metrics\n`);
  return server;
}
