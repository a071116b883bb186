import { createClient, createRouterTransport } from "@connectrpc/connect";
import { afterEach, describe, expect, it } from "vitest";
import { RuntimeHealth } from "../../gen/worker_runtime/v1/backend_pb.js";
import { RuntimeManagement } from "../../gen/worker_runtime/v1/runtime_management_pb.js";
import { type Backend, createBackend, type RuntimeConnection } from "../../src/backend/index.js";
import { createRuntime, silentLogger } from "../../src/runtime/index.js";
import { type MetricsServer, PrometheusMetrics } from "../../src/telemetry/metrics/index.js";
import { eventually, startHarness } from "../support/harness.js";
import { type MetricFamily, parsePrometheusText, sumSamples } from "../support/prometheus-text.js";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

async function scrape(server: MetricsServer): Promise<Map<string, MetricFamily>> {
  return parsePrometheusText(await (await fetch(`http://${server.address}/metrics`)).text());
}

const GET_RUNTIME = "worker_runtime.v1.RuntimeManagement/GetRuntime";

describe("Backend metrics per runtime", () => {
  it("show each runtime's health state and the latency of the Backend's calls to it, labelled by runtime id", async () => {
    const remote = await startHarness({ runtimeId: "rt-remote" });
    let remoteClosed = false;
    cleanups.push(() => (remoteClosed ? undefined : remote.close()));
    const embedded = await createRuntime({ logger: silentLogger, runtimeId: "rt-embedded" });
    const prometheus = new PrometheusMetrics();
    let backend: Backend | undefined;
    const connections = (): Iterable<RuntimeConnection> => backend?.directory.sorted() ?? [];
    backend = createBackend({
      runtime: embedded,
      logger: silentLogger,
      remotes: [{ runtimeId: "rt-remote", url: remote.baseUrl }],
      runtimeInterceptors: prometheus.observeBackend(connections),
      backoff: { initialMs: 50, maxMs: 100 },
    });
    const routed = backend;
    cleanups.push(async () => {
      routed.close();
      await embedded.close();
    });
    const metricsServer = await prometheus.serve("127.0.0.1", 0);
    cleanups.push(() => metricsServer.close());
    await eventually(() => routed.directory.sorted().every((c) => c.health === RuntimeHealth.READY), 10_000, "both READY");

    // A routed call to the remote runtime goes through its client interceptor.
    const management = createClient(RuntimeManagement, createRouterTransport(routed.routes));
    await management.getRuntime({ runtimeId: "rt-remote" });
    const ready = await scrape(metricsServer);
    for (const runtimeId of ["rt-remote", "rt-embedded"]) {
      expect(sumSamples(ready, "worker_runtime_backend_runtime_health", { runtime_id: runtimeId, state: "ready" })).toBe(1);
      expect(sumSamples(ready, "worker_runtime_backend_runtime_health", { runtime_id: runtimeId })).toBe(1);
      const calls = { runtime_id: runtimeId, rpc_method: GET_RUNTIME, rpc_response_status_code: "OK" };
      expect(sumSamples(ready, "worker_runtime_backend_runtime_call_duration_seconds_count", calls)).toBeGreaterThanOrEqual(1);
    }
    // The connection's GetRuntime plus the routed one.
    const remoteCalls = { runtime_id: "rt-remote", rpc_method: GET_RUNTIME, rpc_response_status_code: "OK" };
    expect(sumSamples(ready, "worker_runtime_backend_runtime_call_duration_seconds_count", remoteCalls)).toBeGreaterThanOrEqual(2);
    // Long streams (the shared WatchRuntime, health Watch) are not latency: unary calls only.
    const methods = ready.get("worker_runtime_backend_runtime_call_duration_seconds")?.samples.map((s) => s.labels["rpc_method"]);
    expect(methods?.some((m) => m?.endsWith("/WatchRuntime") || m?.endsWith("/Watch"))).toBe(false);

    // The remote runtime goes away: its health series follow, and its failed calls carry their code.
    await remote.close();
    remoteClosed = true;
    await eventually(
      async () =>
        sumSamples(await scrape(metricsServer), "worker_runtime_backend_runtime_health", { runtime_id: "rt-remote", state: "ready" }) === 0,
      10_000,
      "the remote runtime to leave READY",
    );
    const failedCalls = { runtime_id: "rt-remote", rpc_method: GET_RUNTIME, rpc_response_status_code: "UNAVAILABLE" };
    await eventually(
      async () => sumSamples(await scrape(metricsServer), "worker_runtime_backend_runtime_call_duration_seconds_count", failedCalls) >= 1,
      10_000,
      "a failed reconnection attempt to be counted as UNAVAILABLE",
    );
    const gone = await scrape(metricsServer);
    expect(sumSamples(gone, "worker_runtime_backend_runtime_health", { runtime_id: "rt-remote" })).toBe(1);
    expect(sumSamples(gone, "worker_runtime_backend_runtime_health", { runtime_id: "rt-embedded", state: "ready" })).toBe(1);
    // Removed from the registry: its series go away.
    routed.directory.remove("rt-remote");
    const removed = await scrape(metricsServer);
    expect(removed.get("worker_runtime_backend_runtime_health")?.samples.some((s) => s.labels["runtime_id"] === "rt-remote")).toBe(false);
    // Its call latencies too: runtime ids come and go (AddRuntime, DNS discovery), and series of
    // runtimes long gone would otherwise stay in every scrape for the life of the process.
    const callSeries = (families: Map<string, MetricFamily>, runtimeId: string): number =>
      families.get("worker_runtime_backend_runtime_call_duration_seconds")?.samples.filter((s) => s.labels["runtime_id"] === runtimeId)
        .length ?? 0;
    expect(callSeries(removed, "rt-remote")).toBe(0);
    expect(callSeries(removed, "rt-embedded")).toBeGreaterThan(0);
  });
});
