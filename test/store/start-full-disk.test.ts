import { Code } from "@connectrpc/connect";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { RunStatus, StopReason } from "../../gen/worker_runtime/v1/run_pb.js";
import { DiagnosticSeverity, RuntimeStatus } from "../../gen/worker_runtime/v1/runtime_pb.js";
import { WorkerStatus } from "../../gen/worker_runtime/v1/worker_pb.js";
import { createFileStore, type FileStoreFaults } from "../../src/store/fs/index.js";
import { expectReason } from "../support/errors.js";
import { eventually, startHarness, type Harness } from "../support/harness.js";
import { ScriptedBackend } from "../support/scripted-backend.js";
import { NO_REQUEST, openStore, run, tempDataDir, workerRecord } from "./fs-support.js";

/**
 * Defect 15 of issue 7: start-up on a full disk exited 1 ("append to
 * workers/…/runs failed", no cause), because interrupting the runs a crash
 * left RUNNING writes records. It must start DEGRADED, serve reads, name
 * ENOSPC in a diagnostic and recover when space returns, as it does when
 * the disk fills while running.
 */
let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => ({ dir, cleanup } = await tempDataDir()));
afterEach(async () => cleanup());

/** A data dir as a crash leaves it: worker w1 RUNNING run r1, with r0 queued behind it. */
async function crashedDataDir(): Promise<void> {
  const { store } = await openStore(dir);
  const record = workerRecord("w1");
  record.worker.status = WorkerStatus.RUNNING;
  record.worker.activeRunId = "r1";
  record.worker.queuedRuns = 1;
  await store.putWorker(record);
  await store.putRun("w1", run("r1", RunStatus.RUNNING), NO_REQUEST);
  await store.putRun("w1", run("r2", RunStatus.QUEUED), NO_REQUEST);
  await store.close();
}

describe("start-up on a full disk", () => {
  it("starts DEGRADED with a diagnostic naming ENOSPC, serves reads, and recovers when space returns", async () => {
    await crashedDataDir();
    let full = true;
    // Room for the data dir's lock and no more: without it start-up is refused (lock-full-disk.test.ts).
    const faults: FileStoreFaults = {
      beforeWrite: (file) => {
        if (full && !file.startsWith("LOCK.")) throw Object.assign(new Error("no space left on device"), { code: "ENOSPC" });
      },
    };
    let harness: Harness | undefined = await startHarness({
      store: createFileStore({ dataDir: dir, faults }),
      executionBackend: new ScriptedBackend(),
      storeProbeIntervalMs: 50,
    });
    try {
      const clients = harness.connect("grpc");
      const runtimeId = harness.runtime.runtimeId;
      const worker = { runtimeId, workerId: "w1" };
      expect((await clients.management.getRuntime({})).runtime?.status).toBe(RuntimeStatus.DEGRADED);
      const diagnostics = await clients.management.listDiagnostics({ minSeverity: DiagnosticSeverity.ERROR });
      const failed = diagnostics.diagnostics.find((d) => d.code === "store.write_failed");
      expect(failed?.message).toContain("ENOSPC");
      expect(failed?.message).not.toContain(dir);
      expect((await clients.health.check({ service: "worker_runtime.v1.WorkerInteraction" })).status).toBe(ServingStatus.NOT_SERVING);

      // Reads are served, and show the runs as what they are now: interrupted, not RUNNING for ever.
      const read = await clients.catalog.getWorker({ worker });
      expect(read.worker?.status).toBe(WorkerStatus.IDLE);
      expect(read.worker?.activeRunId).toBe("");
      for (const runId of ["r1", "r2"]) {
        const got = await clients.interaction.getRun({ worker, runId });
        expect(got.run?.status, runId).toBe(RunStatus.INTERRUPTED);
        expect(got.run?.stopReason).toBe(StopReason.INTERRUPTED_BY_RESTART);
      }
      const listed = await clients.interaction.listRuns({ worker });
      expect(listed.runs.map((r) => [r.runId, r.status])).toEqual([
        ["r2", RunStatus.INTERRUPTED],
        ["r1", RunStatus.INTERRUPTED],
      ]);
      for await (const message of clients.observation.watchWorker({ worker })) {
        expect(message.snapshot?.worker?.status).toBe(WorkerStatus.IDLE);
        expect(message.snapshot?.activeRun).toBeUndefined();
        break;
      }
      await expectReason(
        () => clients.interaction.sendInput({ worker, input: { text: "refused" } }),
        Code.Unavailable,
        ErrorReason.STORE_UNAVAILABLE,
      );

      full = false;
      await eventually(async () => (await clients.management.getRuntime({})).runtime?.status === RuntimeStatus.SERVING);
      const { run: accepted } = await clients.interaction.sendInput({ worker, input: { text: "after" } });
      await eventually(
        async () => (await clients.interaction.getRun({ worker, runId: accepted?.runId ?? "" })).run?.status === RunStatus.COMPLETED,
      );
      expect((await clients.interaction.getRun({ worker, runId: "r1" })).run?.status).toBe(RunStatus.INTERRUPTED);
      await harness.close();
      harness = undefined;

      // After a normal restart everything is consistent on disk.
      harness = await startHarness({ store: createFileStore({ dataDir: dir }), executionBackend: new ScriptedBackend() });
      const again = harness.connect("grpc");
      expect((await again.management.getRuntime({})).runtime?.status).toBe(RuntimeStatus.SERVING);
      for (const runId of ["r1", "r2"]) {
        expect((await again.interaction.getRun({ worker, runId })).run?.status, runId).toBe(RunStatus.INTERRUPTED);
      }
      expect((await again.interaction.getRun({ worker, runId: accepted?.runId ?? "" })).run?.status).toBe(RunStatus.COMPLETED);
    } finally {
      await harness?.close();
    }
  });
});
