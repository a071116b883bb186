import { createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { afterEach, describe, expect, it } from "vitest";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { WorkerCatalog } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { WorkerInteraction } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import { type CliProcess, METRICS_LINE, startCli } from "../support/cli-process.js";
import { type FakeOpenAI, startFakeOpenAI } from "../support/fake-openai.js";
import { eventually } from "../support/harness.js";
import { reply } from "../support/openai-chunks.js";
import { type MetricFamily, parsePrometheusText, sumSamples } from "../support/prometheus-text.js";

/**
 * `--metrics-port` as the processes take it: `serve` and `backend` print the
 * metrics URL, serve it while running, close it on SIGTERM, keep nothing
 * without the flag, and refuse bad values with a usage error (exit 2).
 */
const processes: CliProcess[] = [];
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cli of processes.splice(0)) cli.kill();
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

function start(args: readonly string[], env: Record<string, string> = {}): CliProcess {
  const cli = startCli(args, env);
  processes.push(cli);
  return cli;
}

async function scrape(url: string): Promise<Map<string, MetricFamily>> {
  const response = await fetch(url);
  expect(response.status).toBe(200);
  return parsePrometheusText(await response.text());
}

describe("--metrics-port", () => {
  it("serve: prints the metrics URL before the listening line, counts a run end to end and closes the listener on SIGTERM", async () => {
    const fake: FakeOpenAI = await startFakeOpenAI();
    cleanups.push(() => fake.close());
    const cli = start(["serve", "--port", "0", "--metrics-port", "0"], {
      OPENAI_API_KEY: "sk-cli-metrics",
      OPENAI_BASE_URL: fake.baseURL,
      OPENAI_MODEL: "fake-model",
    });
    const listening = await cli.listening;
    const url = METRICS_LINE.exec(cli.stdout())?.[1];
    if (!url) throw new Error(`no metrics line in ${cli.stdout()}`);
    expect(cli.stdout().indexOf("worker-runtime metrics")).toBeLessThan(cli.stdout().indexOf("worker-runtime listening"));
    const session = new Http2SessionManager(`http://${listening.h2c}`);
    cleanups.push(() => session.abort());
    const transport = createGrpcTransport({ baseUrl: `http://${listening.h2c}`, sessionManager: session });
    const { worker } = await createClient(WorkerCatalog, transport).createWorker({ runtimeId: listening.runtimeId });
    const interaction = createClient(WorkerInteraction, transport);
    fake.enqueue(reply({ text: "from the process", usage: { prompt: 5, completion: 3 } }));
    const { run } = await interaction.sendInput({ worker: worker?.ref, input: { text: "hi" } });
    await eventually(
      async () => (await interaction.getRun({ worker: worker?.ref, runId: run?.runId ?? "" })).run?.status === RunStatus.COMPLETED,
      10_000,
      "the run to complete",
    );
    await eventually(async () => sumSamples(await scrape(url), "worker_runtime_runs_total") === 1, 5_000, "the run counted");
    const metrics = await scrape(url);
    expect(sumSamples(metrics, "worker_runtime_runs_total", { status: "completed", stop_reason: "end_turn" })).toBe(1);
    expect(sumSamples(metrics, "gen_ai_client_token_usage_sum", { gen_ai_token_type: "input", gen_ai_request_model: "fake-model" })).toBe(
      5,
    );
    expect(sumSamples(metrics, "gen_ai_client_token_usage_sum", { gen_ai_token_type: "output" })).toBe(3);
    expect(
      sumSamples(metrics, "rpc_server_call_duration_seconds_count", {
        rpc_method: "worker_runtime.v1.WorkerCatalog/CreateWorker",
        rpc_response_status_code: "OK",
      }),
    ).toBe(1);
    expect(sumSamples(metrics, "worker_runtime_workers", { status: "idle" })).toBe(1);
    expect(metrics.has("process_resident_memory_bytes")).toBe(true);
    session.abort();
    cli.child.kill("SIGTERM");
    expect(await cli.exited).toEqual({ code: 0, signal: null });
    await expect(fetch(url)).rejects.toThrow();
  });

  it("backend: serves the embedded runtime's health and call latency, and keeps no metrics without the flag", async () => {
    // Both processes start at once: a backend's start (through tsx, with its embedded runtime) is the
    // slow part of this test, 5-15 s apiece on a loaded two-core machine, where one after the other
    // ran out of the default 60 s.
    const cli = start(["backend", "--port", "0", "--metrics-port", "0", "--runtime-id", "rt-emb"]);
    const off = start(["backend", "--port", "0"]);
    await cli.listening;
    const url = METRICS_LINE.exec(cli.stdout())?.[1];
    if (!url) throw new Error(`no metrics line in ${cli.stdout()}`);
    await eventually(
      async () => sumSamples(await scrape(url), "worker_runtime_backend_runtime_health", { runtime_id: "rt-emb", state: "ready" }) === 1,
      10_000,
      "the embedded runtime READY",
    );
    const metrics = await scrape(url);
    const calls = { runtime_id: "rt-emb", rpc_method: "worker_runtime.v1.RuntimeManagement/GetRuntime", rpc_response_status_code: "OK" };
    expect(sumSamples(metrics, "worker_runtime_backend_runtime_call_duration_seconds_count", calls)).toBeGreaterThanOrEqual(1);

    await off.listening;
    expect(off.stdout()).not.toMatch(METRICS_LINE);
  }, 120_000);

  it.each([
    [["serve", "--metrics-port", "70000"], "--metrics-port must be a port number 0-65535"],
    [["serve", "--metrics-port", "nine"], "--metrics-port must be a port number 0-65535"],
    [["serve", "--metrics-host", "127.0.0.1"], "--metrics-host needs --metrics-port"],
    [["backend", "--metrics-port=-5"], "--metrics-port must be a port number 0-65535"],
    [["backend", "--metrics-port", "0", "--metrics-host", "not a host"], "--metrics-host must be an IP address or localhost"],
  ])("%j is a usage error", async (args, message) => {
    const cli = start([...args, "--port", "0"]);
    expect((await cli.exited).code).toBe(2);
    expect(cli.stderr()).toContain(message);
    expect(cli.stdout()).toBe("");
  });
});
