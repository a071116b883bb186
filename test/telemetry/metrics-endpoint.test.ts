import { Code, ConnectError } from "@connectrpc/connect";
import { Http2SessionManager } from "@connectrpc/connect-node";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { createOpenAIBackend } from "../../src/engine/index.js";
import { createRuntime, silentLogger } from "../../src/runtime/index.js";
import { startRuntimeServer } from "../../src/server/index.js";
import { createFileStore } from "../../src/store/fs/index.js";
import { type MetricsServer, PrometheusMetrics } from "../../src/telemetry/metrics/index.js";
import { startFakeOpenAI } from "../support/fake-openai.js";
import { clientsFor, eventually, makeTransport } from "../support/harness.js";
import { reply } from "../support/openai-chunks.js";
import { type MetricFamily, parsePrometheusText, sumSamples } from "../support/prometheus-text.js";

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

/** Fetches /metrics and parses it strictly. */
async function scrape(server: MetricsServer): Promise<Map<string, MetricFamily>> {
  const response = await fetch(`http://${server.address}/metrics`);
  expect(response.status).toBe(200);
  expect(response.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
  return parsePrometheusText(await response.text());
}

/** A runtime with the OpenAI backend against the fake provider, on the file store, served with metrics as `serve --metrics-port` wires it. */
async function startMeteredRuntime() {
  const fake = await startFakeOpenAI();
  cleanups.push(() => fake.close());
  const dataDir = await mkdtemp(join(tmpdir(), "metrics-"));
  cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
  const prometheus = new PrometheusMetrics();
  const runtime = await createRuntime({
    logger: silentLogger,
    metrics: prometheus.runtime,
    store: createFileStore({ dataDir, metrics: prometheus.runtime }),
    executionBackend: createOpenAIBackend({ apiKey: "sk-metrics-test", baseURL: fake.baseURL, defaultModel: "fake-model" }),
  });
  prometheus.observeRuntime(runtime);
  const server = await startRuntimeServer({
    runtime,
    host: "127.0.0.1",
    port: 0,
    logger: silentLogger,
    interceptors: [prometheus.rpcInterceptor],
  });
  const metricsServer = await prometheus.serve("127.0.0.1", 0);
  const session = new Http2SessionManager(`http://${server.h2Address}`);
  cleanups.push(async () => {
    session.abort();
    await server.close(0);
    await metricsServer.close();
  });
  const clients = clientsFor(makeTransport("grpc", `http://${server.h2Address}`, session));
  return { fake, runtime, metricsServer, clients };
}

describe("the metrics endpoint", () => {
  it("serves strict Prometheus text in which runs, tokens, watchers, deliveries, store writes and RPCs move with a real run", async () => {
    const { fake, runtime, metricsServer, clients } = await startMeteredRuntime();
    const { worker } = await clients.catalog.createWorker({ runtimeId: runtime.runtimeId });
    if (!worker?.ref) throw new Error("no worker");
    const before = await scrape(metricsServer);
    // Process metrics come from collectDefaultMetrics.
    expect(before.get("process_cpu_seconds_total")?.type).toBe("counter");
    expect(before.get("nodejs_eventloop_lag_seconds")?.type).toBe("gauge");
    expect(sumSamples(before, "worker_runtime_watchers", { stream: "worker" })).toBe(0);
    expect(sumSamples(before, "worker_runtime_workers", { status: "idle" })).toBe(1);

    // A watcher, attached before the run.
    const watching = new AbortController();
    const watch = clients.observation.watchWorker({ worker: worker.ref }, { signal: watching.signal })[Symbol.asyncIterator]();
    expect((await watch.next()).value?.snapshot).toBeDefined();
    const whileWatching = await scrape(metricsServer);
    expect(sumSamples(whileWatching, "worker_runtime_watchers", { stream: "worker" })).toBe(1);

    fake.enqueue(reply({ text: "counted answer", usage: { prompt: 11, completion: 7 } }));
    const { run } = await clients.interaction.sendInput({ worker: worker.ref, input: { text: "count me" } });
    let received = 0;
    for (;;) {
      const message = await watch.next();
      if (message.done) throw new Error("the watch ended before the run did");
      received += message.value.events.length;
      const ended = message.value.events.some(
        (event) =>
          event.kind.case === "runChanged" && event.kind.value.runId === run?.runId && event.kind.value.status === RunStatus.COMPLETED,
      );
      if (ended) break;
    }
    // A bad request: empty input text is INVALID_ARGUMENT.
    const refused = await clients.interaction.sendInput({ worker: worker.ref, input: { text: "" } }).catch((error: unknown) => error);
    expect(ConnectError.from(refused).code).toBe(Code.InvalidArgument);
    watching.abort();
    await eventually(
      async () => sumSamples(await scrape(metricsServer), "worker_runtime_watchers", { stream: "worker" }) === 0,
      5_000,
      "watcher gauge back to 0",
    );
    const watchEnded = { rpc_method: "worker_runtime.v1.WorkerObservation/WatchWorker", rpc_response_status_code: "CANCELLED" };
    await eventually(
      async () => sumSamples(await scrape(metricsServer), "rpc_server_call_duration_seconds_count", watchEnded) === 1,
      5_000,
      "the watch's RPC duration, observed when its stream ended",
    );
    const after = await scrape(metricsServer);
    const delta = (name: string, labels: Record<string, string> = {}): number =>
      sumSamples(after, name, labels) - sumSamples(before, name, labels);

    expect(delta("worker_runtime_runs_total", { status: "completed", stop_reason: "end_turn" })).toBe(1);
    expect(delta("worker_runtime_runs_total")).toBe(1);
    expect(delta("worker_runtime_run_duration_seconds_count", { status: "completed" })).toBe(1);
    const model = { gen_ai_operation_name: "chat", gen_ai_provider_name: "openai", gen_ai_request_model: "fake-model" };
    expect(delta("gen_ai_client_token_usage_sum", { ...model, gen_ai_token_type: "input" })).toBe(11);
    expect(delta("gen_ai_client_token_usage_sum", { ...model, gen_ai_token_type: "output" })).toBe(7);
    expect(delta("gen_ai_client_token_usage_count", { ...model, gen_ai_token_type: "output" })).toBe(1);
    expect(delta("gen_ai_client_operation_duration_seconds_count", model)).toBe(1);
    expect(after.get("gen_ai_client_operation_duration_seconds")?.samples.some((s) => "error_type" in s.labels)).toBe(false);
    expect(delta("gen_ai_client_operation_time_to_first_chunk_seconds_count", model)).toBe(1);
    const sendInput = "worker_runtime.v1.WorkerInteraction/SendInput";
    expect(delta("rpc_server_call_duration_seconds_count", { rpc_method: sendInput, rpc_response_status_code: "OK" })).toBe(1);
    expect(delta("rpc_server_call_duration_seconds_count", { rpc_method: sendInput, rpc_response_status_code: "INVALID_ARGUMENT" })).toBe(
      1,
    );
    // Every event the watcher read was counted as delivered (more may have been sent after it stopped reading).
    expect(received).toBeGreaterThan(0);
    expect(delta("worker_runtime_events_delivered_total", { stream: "worker" })).toBeGreaterThanOrEqual(received);
    expect(delta("worker_runtime_delivery_batch_size_sum", { stream: "worker" })).toBe(
      delta("worker_runtime_events_delivered_total", { stream: "worker" }),
    );
    // The file store's writes: appends until durable, group commits and their fsyncs.
    expect(delta("worker_runtime_store_append_duration_seconds_count", { log: "worker_events" })).toBeGreaterThan(0);
    expect(delta("worker_runtime_store_append_duration_seconds_count", { log: "transcript" })).toBeGreaterThan(0);
    expect(delta("worker_runtime_store_group_commit_records_count")).toBeGreaterThan(0);
    expect(delta("worker_runtime_store_fsync_duration_seconds_count")).toBeGreaterThanOrEqual(
      delta("worker_runtime_store_group_commit_records_count"),
    );
    expect(sumSamples(after, "worker_runtime_workers", { status: "idle" })).toBe(1);
  });

  it("labels a failed provider call with its error type and the run with its status and stop reason", async () => {
    const { fake, runtime, metricsServer, clients } = await startMeteredRuntime();
    const { worker } = await clients.catalog.createWorker({ runtimeId: runtime.runtimeId });
    if (!worker?.ref) throw new Error("no worker");
    fake.enqueue({ kind: "error", status: 401, body: { error: { message: "bad key", type: "invalid_request_error" } } });
    const { run } = await clients.interaction.sendInput({ worker: worker.ref, input: { text: "fail me" } });
    await eventually(
      async () => (await clients.interaction.getRun({ worker: worker.ref, runId: run?.runId ?? "" })).run?.status === RunStatus.FAILED,
      5_000,
      "the run to fail",
    );
    await eventually(
      async () => sumSamples(await scrape(metricsServer), "worker_runtime_runs_total") === 1,
      5_000,
      "the run to be counted",
    );
    const after = await scrape(metricsServer);
    expect(sumSamples(after, "worker_runtime_runs_total", { status: "failed", stop_reason: "error" })).toBe(1);
    const failed = after.get("gen_ai_client_operation_duration_seconds")?.samples.filter((s) => s.name.endsWith("_count") && s.value > 0);
    expect(failed?.map((s) => s.labels["error_type"])).toEqual(["provider_auth_failed"]);
    // No usage came, so no tokens are recorded (estimates are not provider-reported usage).
    expect(sumSamples(after, "gen_ai_client_token_usage_count")).toBe(0);
  });

  it("labels a stream that failed with its error's code, and one whose deadline ran out with DEADLINE_EXCEEDED", async () => {
    const { runtime, metricsServer, clients } = await startMeteredRuntime();
    const { worker } = await clients.catalog.createWorker({ runtimeId: runtime.runtimeId });
    const missing = { runtimeId: runtime.runtimeId, workerId: "w-missing" };
    const drain = async (messages: AsyncIterable<unknown>): Promise<unknown> => {
      try {
        for await (const _ of messages) {
          // Read until the stream ends.
        }
      } catch (error) {
        return error;
      }
      return undefined;
    };
    expect(ConnectError.from(await drain(clients.observation.watchWorker({ worker: missing }))).code).toBe(Code.NotFound);
    // The deadline in the header only, so the server ends the stream (a client-side timer could cancel it first).
    const timedOut = await drain(clients.observation.watchWorker({ worker: worker?.ref }, { headers: { "grpc-timeout": "200m" } }));
    expect(ConnectError.from(timedOut).code).toBe(Code.DeadlineExceeded);
    const watch = { rpc_method: "worker_runtime.v1.WorkerObservation/WatchWorker" };
    await eventually(
      async () => sumSamples(await scrape(metricsServer), "rpc_server_call_duration_seconds_count", watch) === 2,
      5_000,
      "both watches observed",
    );
    const after = await scrape(metricsServer);
    expect(sumSamples(after, "rpc_server_call_duration_seconds_count", { ...watch, rpc_response_status_code: "NOT_FOUND" })).toBe(1);
    expect(sumSamples(after, "rpc_server_call_duration_seconds_count", { ...watch, rpc_response_status_code: "DEADLINE_EXCEEDED" })).toBe(
      1,
    );
    // The timed-out watch was measured until its end, not until its first message.
    expect(
      sumSamples(after, "rpc_server_call_duration_seconds_sum", { ...watch, rpc_response_status_code: "DEADLINE_EXCEEDED" }),
    ).toBeGreaterThanOrEqual(0.15);
  });

  it("answers 404 off /metrics and 405 for another method", async () => {
    const { metricsServer } = await startMeteredRuntime();
    expect((await fetch(`http://${metricsServer.address}/`)).status).toBe(404);
    expect((await fetch(`http://${metricsServer.address}/metrics/x`)).status).toBe(404);
    expect((await fetch(`http://${metricsServer.address}/metrics`, { method: "POST" })).status).toBe(405);
  });
});
