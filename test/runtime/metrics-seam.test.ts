import { create } from "@bufbuild/protobuf";
import { afterEach, describe, expect, it } from "vitest";
import { BusyPolicy } from "../../gen/worker_runtime/v1/common_pb.js";
import { RunStatus, StopReason } from "../../gen/worker_runtime/v1/run_pb.js";
import { CreateWorkerRequestSchema } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { SendInputRequestSchema } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import { WatchRuntimeRequestSchema } from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import { createRuntime, noopMetrics, type Runtime, type RuntimeMetrics, silentLogger } from "../../src/runtime/index.js";
import { deliveryCounter, timedAppend } from "../../src/runtime/metrics.js";
import { eventually } from "../support/harness.js";
import { holdOpen, ScriptedBackend } from "../support/scripted-backend.js";

/** A metrics seam that records every call, so tests see exactly what the core reports. */
function recordingMetrics() {
  const calls = {
    runs: [] as { status: RunStatus; stopReason: StopReason; started: boolean }[],
    delivered: [] as { stream: string; count: number }[],
    appends: [] as string[],
  };
  const metrics: RuntimeMetrics = {
    runEnded: (run) => calls.runs.push({ status: run.status, stopReason: run.stopReason, started: run.startedAt !== undefined }),
    eventsDelivered: (stream, count) => calls.delivered.push({ stream, count }),
    storeAppended: (kind, seconds) => {
      expect(seconds).toBeGreaterThanOrEqual(0);
      calls.appends.push(kind);
    },
    storeGroupCommitted: () => {},
    storeSynced: () => {},
    providerCalled: () => {},
  };
  return { metrics, calls };
}

const runtimes: Runtime[] = [];
afterEach(async () => {
  for (const runtime of runtimes.splice(0)) await runtime.close();
});

describe("the core's metrics seam", () => {
  it("reports every run's end once, including a queued run cancelled before it started", async () => {
    const { metrics, calls } = recordingMetrics();
    const backend = new ScriptedBackend();
    const held = holdOpen("partial");
    backend.enqueue(held.script);
    const runtime = await createRuntime({ logger: silentLogger, executionBackend: backend, metrics });
    runtimes.push(runtime);
    const { worker } = await runtime.createWorker(create(CreateWorkerRequestSchema, { runtimeId: runtime.runtimeId }));
    const first = await runtime.sendInput(create(SendInputRequestSchema, { worker: worker?.ref, input: { text: "one" } }));
    await held.started;
    const queued = await runtime.sendInput(
      create(SendInputRequestSchema, { worker: worker?.ref, input: { text: "two" }, busyPolicy: BusyPolicy.ENQUEUE }),
    );
    await runtime.cancelRun({ worker: worker?.ref, runId: queued.runId });
    expect(calls.runs).toEqual([{ status: RunStatus.CANCELLED, stopReason: StopReason.CANCELLED, started: false }]);
    held.release();
    await eventually(() => calls.runs.length === 2, 5_000, "the first run's end");
    expect(calls.runs[1]).toEqual({ status: RunStatus.COMPLETED, stopReason: StopReason.END_TURN, started: true });
    expect((await runtime.getRun({ worker: worker?.ref, runId: first.runId })).status).toBe(RunStatus.COMPLETED);
    // The memory store's appends are timed too.
    expect(calls.appends).toContain("worker_events");
    expect(calls.appends).toContain("transcript");
    expect(calls.appends).toContain("runtime_events");
  });

  it("reports each batch a watch takes, by stream kind", async () => {
    const { metrics, calls } = recordingMetrics();
    const runtime = await createRuntime({ logger: silentLogger, executionBackend: new ScriptedBackend(), metrics });
    runtimes.push(runtime);
    const watching = new AbortController();
    const watch = runtime.watchRuntime(create(WatchRuntimeRequestSchema, { runtimeId: runtime.runtimeId }), {
      signal: watching.signal,
    });
    expect((await watch.next()).value?.snapshot).toBeDefined();
    await runtime.createWorker(create(CreateWorkerRequestSchema, { runtimeId: runtime.runtimeId }));
    const batch = await watch.next();
    const received = batch.value?.events.length ?? 0;
    expect(received).toBeGreaterThan(0);
    expect(calls.delivered.filter((d) => d.stream === "runtime").reduce((sum, d) => sum + d.count, 0)).toBe(received);
    watching.abort();
    await watch.return(undefined);
  });

  it("costs nothing when off: appends are not wrapped and watches get no counter", () => {
    const append = async (): Promise<void> => {};
    expect(timedAppend(noopMetrics, "worker_events", append)).toBe(append);
    expect(deliveryCounter(noopMetrics, "worker")).toBeUndefined();
    const { metrics } = recordingMetrics();
    expect(timedAppend(metrics, "worker_events", append)).not.toBe(append);
    expect(deliveryCounter(metrics, "worker")).toBeTypeOf("function");
  });
});
