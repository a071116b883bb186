import path from "node:path";
import { describe, expect, it } from "vitest";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import type { WatchWorkerResponse } from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { WorkerStatus } from "../../gen/worker_runtime/v1/worker_pb.js";
import { TERMINAL_RUN_STATUSES } from "../../src/runtime/in-flight.js";
import { eventually, runToEnd } from "../support/harness.js";
import { damageFirstSegment } from "../support/damaged-segment.js";
import { useDamageableRuntime } from "../support/damageable-runtime.js";

/**
 * A worker quarantined while it is served (a read found its history
 * damaged) has logs that take no more writes, so its last changes (FAILED,
 * and the end of the run it had in flight) cannot be durable events. The
 * watches open at that moment must still hear of them, and a new watch's
 * snapshot must show them: it used to show the worker IDLE with its run
 * still active, forever, while GetWorker said FAILED.
 */
const stored = useDamageableRuntime("wr-quarantine-", { runtimeId: "rq", heartbeatIntervalMs: 200, segmentBytes: 300 });

describe("a worker quarantined while watched", () => {
  it("shows its watchers and later snapshots the worker FAILED and the run it had in flight ended", async () => {
    const first = await stored.serve();
    const clients = first.connect("grpc");
    const worker = (await clients.catalog.createWorker({ runtimeId: "rq" })).worker?.ref as WorkerRef;
    for (let i = 0; i < 6; i++) expect((await runToEnd(clients, worker, `message ${i}`))?.status).toBe(RunStatus.COMPLETED);
    await first.close();
    // A sealed segment is trusted at open; the next run's history read finds the damage.
    await damageFirstSegment(path.join(stored.dir, "workers", worker.workerId));

    const second = await stored.serve();
    try {
      const again = second.connect("grpc");
      const watch = new AbortController();
      const seen: WatchWorkerResponse[] = [];
      const watching = (async () => {
        for await (const message of again.observation.watchWorker({ worker }, { signal: watch.signal })) seen.push(message);
      })().catch(() => {});
      await eventually(() => seen.length > 0);
      expect(seen[0]?.snapshot?.worker?.status).toBe(WorkerStatus.IDLE);

      const { run } = await again.interaction.sendInput({ worker, input: { text: "once more" } });
      const runId = run?.runId ?? "";
      await eventually(async () => (await again.catalog.getWorker({ worker })).worker?.status === WorkerStatus.FAILED);
      // FAILED shows at once (input is refused from then on); the run in flight ends right after, not before.
      await eventually(
        async () => TERMINAL_RUN_STATUSES.has((await again.interaction.getRun({ worker, runId })).run?.status ?? RunStatus.UNSPECIFIED),
        5_000,
        "the run in flight ended",
      );
      const ended = await again.interaction.getRun({ worker, runId });
      const events = () => seen.flatMap((m) => m.events);
      await eventually(
        () => events().some((e) => e.kind.case === "workerChanged" && e.kind.value.status === WorkerStatus.FAILED),
        5_000,
        "the open watch told of FAILED",
      );
      const runEnd = events().find(
        (e) => e.kind.case === "runChanged" && e.kind.value.runId === runId && TERMINAL_RUN_STATUSES.has(e.kind.value.status),
      );
      expect(runEnd?.kind.value).toMatchObject({ status: ended.run?.status });
      watch.abort();
      await watching;

      for await (const message of again.observation.watchWorker({ worker })) {
        expect(message.snapshot?.worker?.status).toBe(WorkerStatus.FAILED);
        expect(message.snapshot?.worker?.failureMessage).toBe((await again.catalog.getWorker({ worker })).worker?.failureMessage);
        expect(message.snapshot?.activeRun).toBeUndefined();
        expect(message.snapshot?.queuedRuns).toEqual([]);
        break;
      }
    } finally {
      await second.close();
    }
  });
});
