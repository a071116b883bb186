import { mkdtemp, rm } from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { WorkerStatus } from "../../gen/worker_runtime/v1/worker_pb.js";
import { createFileStore } from "../../src/store/fs/index.js";
import { startHarness, type Harness } from "../support/harness.js";
import { ScriptedBackend } from "../support/scripted-backend.js";

/**
 * Defect 14 of issue 7: with the file store, right after GetWorker showed
 * the worker IDLE, GetRun of the run that just ended still said RUNNING
 * (the store indexed the run's final version only once it was durable).
 * A read after a state change must see it — and a run read FAILED has
 * its failure notice in the transcript already.
 */
const RUNS = 30;
const FINAL = new Set([RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.INTERRUPTED]);

let harness: Harness | undefined;
let dataDir = "";
afterEach(async () => {
  await harness?.close();
  harness = undefined;
  if (dataDir !== "") await rm(dataDir, { recursive: true, force: true });
});

describe("file store: reads after a run ends", () => {
  it("GetRun right after GetWorker shows IDLE returns the run's final state, every time", async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), "wr-read-after-idle-"));
    const backend = new ScriptedBackend();
    harness = await startHarness({ store: createFileStore({ dataDir }), executionBackend: backend });
    const clients = harness.connect("grpc");
    const { worker } = await clients.catalog.createWorker({ runtimeId: harness.runtime.runtimeId });
    const stale: string[] = [];
    for (let i = 0; i < RUNS; i++) {
      if (i % 3 === 2)
        backend.enqueue(async () => ({ kind: "failed", reason: ErrorReason.PROVIDER_UNAVAILABLE, message: "provider down" }));
      const { run } = await clients.interaction.sendInput({ worker: worker?.ref, input: { text: `q${i}` } });
      const runId = run?.runId ?? "";
      // Poll GetWorker (bounded) until the worker is idle again, then read the run at once.
      let idle = false;
      for (let polls = 0; polls < 5_000 && !idle; polls++) {
        const current = await clients.catalog.getWorker({ worker: worker?.ref });
        idle = current.worker?.status === WorkerStatus.IDLE && current.worker.activeRunId === "";
      }
      expect(idle, `worker idle after run ${i}`).toBe(true);
      const after = await clients.interaction.getRun({ worker: worker?.ref, runId });
      if (!FINAL.has(after.run?.status ?? RunStatus.UNSPECIFIED)) stale.push(`${runId}: ${RunStatus[after.run?.status ?? 0]}`);
      if (after.run?.status === RunStatus.FAILED) {
        const tail = await clients.observation.readTranscript({ worker: worker?.ref, limit: 1 });
        if (tail.entries[0]?.content.case !== "notice") stale.push(`${runId}: FAILED without its notice`);
      }
      const listed = await clients.interaction.listRuns({ worker: worker?.ref, pageSize: 1 });
      if (listed.runs[0]?.runId === runId && !FINAL.has(listed.runs[0].status))
        stale.push(`${runId} listed: ${RunStatus[listed.runs[0].status]}`);
    }
    expect(stale).toEqual([]);
  });
});
