import { timestampMs } from "@bufbuild/protobuf/wkt";
import { afterEach, describe, expect, it } from "vitest";
import { RunStatus, StopReason } from "../../gen/worker_runtime/v1/run_pb.js";
import { METRICS_LINE } from "../support/cli-process.js";
import { startFakeOpenAI } from "../support/fake-openai.js";
import { eventually } from "../support/harness.js";
import { parsePrometheusText, sumSamples } from "../support/prometheus-text.js";
import { startRestartableServe } from "../support/restartable-serve.js";

/**
 * A run a crash cut off is marked INTERRUPTED when the file store is opened
 * again, which may be long after. Its duration must not count that outage:
 * it ends when the runtime last recorded anything while it ran (the worker's
 * last durable event before the crash), in GetRun's ended_at and in
 * worker_runtime_run_duration_seconds alike. Shown through a real restart:
 * `serve --data-dir` SIGKILLed mid-run, then started again on the same dir.
 */
const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe("a run interrupted by a crash and a restart", () => {
  it("ends at the last thing recorded before the crash, not at the restart", async () => {
    const fake = await startFakeOpenAI();
    cleanups.push(() => fake.close());
    fake.enqueue({ kind: "stall" });
    const env = { OPENAI_API_KEY: "sk-test", OPENAI_BASE_URL: fake.baseURL };
    const { listening: first, before, restart } = await startRestartableServe(["--metrics-port", "0"], env, cleanups);
    const { worker } = await before.catalog.createWorker({ runtimeId: first.runtimeId });
    const { run } = await before.interaction.sendInput({ worker: worker?.ref, input: { text: "take your time" } });
    const runId = run?.runId ?? "";
    await eventually(() => fake.requests.length > 0, 10_000, "the provider request");
    const running = (await before.interaction.getRun({ worker: worker?.ref, runId })).run;
    expect(running?.status).toBe(RunStatus.RUNNING);
    // Every moment after the kill is outage; the restart's clock reads later still.
    const restarting = restart();
    const crashedBy = Date.now();
    const { process: second, clients: after } = await restarting;
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
