import { timestampMs } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { RunStatus, StopReason } from "../../gen/worker_runtime/v1/run_pb.js";
import { WorkerCatalog } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { WorkerInteraction } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import { type CliProcess, METRICS_LINE, startCli } from "../support/cli-process.js";
import { startFakeOpenAI } from "../support/fake-openai.js";
import { eventually } from "../support/harness.js";
import { parsePrometheusText, sumSamples } from "../support/prometheus-text.js";

/**
 * A run a crash cut off is marked INTERRUPTED when the file store is opened
 * again, which may be long after. Its duration must not count that outage:
 * it ends when the runtime last recorded anything while it ran (the worker's
 * last durable event before the crash), in GetRun's ended_at and in
 * worker_runtime_run_duration_seconds alike. Shown through a real restart:
 * `serve --data-dir` SIGKILLed mid-run, then started again on the same dir.
 */
const processes: CliProcess[] = [];
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cli of processes.splice(0)) cli.kill();
  for (const cleanup of cleanups.splice(0)) await cleanup();
});

describe("a run interrupted by a crash and a restart", () => {
  it("ends at the last thing recorded before the crash, not at the restart", async () => {
    const dataDir = await mkdtemp(path.join(tmpdir(), "interrupted-duration-"));
    cleanups.push(() => rm(dataDir, { recursive: true, force: true }));
    const fake = await startFakeOpenAI();
    cleanups.push(() => fake.close());
    fake.enqueue({ kind: "stall" });
    const env = { OPENAI_API_KEY: "sk-test", OPENAI_BASE_URL: fake.baseURL };
    const start = () => {
      const cli = startCli(["serve", "--port", "0", "--data-dir", dataDir, "--metrics-port", "0"], env);
      processes.push(cli);
      return cli;
    };
    const clientsOf = (h2c: string) => {
      const session = new Http2SessionManager(`http://${h2c}`);
      cleanups.push(() => session.abort());
      const transport = createGrpcTransport({ baseUrl: `http://${h2c}`, sessionManager: session });
      return { catalog: createClient(WorkerCatalog, transport), interaction: createClient(WorkerInteraction, transport) };
    };

    const first = start();
    const before = clientsOf((await first.listening).h2c);
    const { worker } = await before.catalog.createWorker({ runtimeId: (await first.listening).runtimeId });
    const { run } = await before.interaction.sendInput({ worker: worker?.ref, input: { text: "take your time" } });
    const runId = run?.runId ?? "";
    await eventually(() => fake.requests.length > 0, 10_000, "the provider request");
    const running = (await before.interaction.getRun({ worker: worker?.ref, runId })).run;
    expect(running?.status).toBe(RunStatus.RUNNING);
    first.child.kill("SIGKILL");
    await first.exited;
    // Every moment from here on is outage; the restart's clock reads later still.
    const crashedBy = Date.now();

    const second = start();
    const listening = await second.listening;
    const after = clientsOf(listening.h2c);
    const ended = (await after.interaction.getRun({ worker: worker?.ref, runId })).run;
    expect([ended?.status, ended?.stopReason]).toEqual([RunStatus.INTERRUPTED, StopReason.INTERRUPTED_BY_RESTART]);
    if (!ended?.startedAt || !ended.endedAt) throw new Error("the interrupted run has no start or end");
    expect(timestampMs(ended.startedAt)).toBe(timestampMs(running?.startedAt ?? ended.startedAt));
    const endedMs = timestampMs(ended.endedAt);
    expect(endedMs).toBeGreaterThanOrEqual(timestampMs(ended.startedAt));
    expect(endedMs).toBeLessThanOrEqual(crashedBy);

    // The metric observes the same duration.
    const url = METRICS_LINE.exec(second.stdout())?.[1];
    if (!url) throw new Error(`no metrics line in ${second.stdout()}`);
    const metrics = parsePrometheusText(await (await fetch(url)).text());
    expect(sumSamples(metrics, "worker_runtime_run_duration_seconds_count", { status: "interrupted" })).toBe(1);
    expect(sumSamples(metrics, "worker_runtime_run_duration_seconds_sum", { status: "interrupted" })).toBeCloseTo(
      (endedMs - timestampMs(ended.startedAt)) / 1000,
      3,
    );
  }, 60_000);
});
