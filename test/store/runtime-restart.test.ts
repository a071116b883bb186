import { Code } from "@connectrpc/connect";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { create } from "@bufbuild/protobuf";
import { BusyPolicy, WorkerRefSchema, type WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { DiagnosticSeverity, RuntimeStatus } from "../../gen/worker_runtime/v1/runtime_pb.js";
import { WorkerStatus } from "../../gen/worker_runtime/v1/worker_pb.js";
import { createFileStore, type FileStoreFaults, type FileStoreOptions } from "../../src/store/fs/index.js";
import type { Runtime } from "../../src/runtime/index.js";
import { cursorAt, workerCursor } from "../support/cursors.js";
import { expectReason } from "../support/errors.js";
import { eventually, startHarness, type Clients, type Harness } from "../support/harness.js";
import { ScriptedBackend } from "../support/scripted-backend.js";
import { damageFirstSegment } from "../support/damaged-segment.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "wr-restart-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function serve(faults?: FileStoreFaults, options: Partial<FileStoreOptions> = {}): Promise<{ harness: Harness; clients: Clients }> {
  let runtime: Runtime | undefined;
  const harness = await startHarness({
    store: createFileStore({
      dataDir: dir,
      ...options,
      ...(faults ? { faults } : {}),
      onCorruption: (workerId, message) => runtime?.reportCorruption(workerId, message),
    }),
    executionBackend: new ScriptedBackend(),
    storeProbeIntervalMs: 50,
  });
  runtime = harness.runtime;
  return { harness, clients: harness.connect("grpc") };
}

async function completed(clients: Clients, worker: WorkerRef, runId: string): Promise<void> {
  await eventually(async () => (await clients.interaction.getRun({ worker, runId })).run?.status === RunStatus.COMPLETED);
}

describe("a runtime on the file store", () => {
  it("keeps runtime_id, workers, transcripts, usage and cursors across a restart", async () => {
    const first = await serve();
    const runtimeId = first.harness.runtime.runtimeId;
    const { worker } = await first.clients.catalog.createWorker({ runtimeId, displayName: "kept", labels: { a: "b" } });
    const ref = create(WorkerRefSchema, { runtimeId, workerId: worker?.ref?.workerId ?? "" });
    const one = await first.clients.interaction.sendInput({ worker: ref, input: { text: "one" } });
    await completed(first.clients, ref, one.run?.runId ?? "");
    const cursor = first.harness.runtime.getWorker({ worker: ref }).lastEventSeq;
    const savedCursor = cursorAt(await workerCursor(first.clients, ref), cursor);
    const two = await first.clients.interaction.sendInput({ worker: ref, input: { text: "two" }, busyPolicy: BusyPolicy.ENQUEUE });
    await completed(first.clients, ref, two.run?.runId ?? "");
    const before = first.harness.runtime.getWorker({ worker: ref });
    await first.harness.close();

    const second = await serve();
    try {
      expect(second.harness.runtime.runtimeId).toBe(runtimeId);
      const { worker: after } = await second.clients.catalog.getWorker({ worker: ref });
      expect(after?.displayName).toBe("kept");
      expect(after?.labels).toEqual({ a: "b" });
      expect(after?.status).toBe(WorkerStatus.IDLE);
      expect(after?.usage?.inputTokens).toBe(before.usage?.inputTokens);
      expect(after?.usage?.inputTokens).toBeGreaterThan(0n);
      const transcript = await second.clients.observation.readTranscript({ worker: ref });
      expect(transcript.entries.map((e) => (e.content.value as { text: string }).text)).toEqual(["one", "ok", "two", "ok"]);
      const runs = await second.clients.interaction.listRuns({ worker: ref });
      expect(runs.runs.map((r) => r.runId)).toEqual([two.run?.runId, one.run?.runId]);

      // Resume from the cursor saved before the restart: every later durable event, exactly once.
      const resumed: bigint[] = [];
      const three = await second.clients.interaction.sendInput({ worker: ref, input: { text: "three" } });
      await completed(second.clients, ref, three.run?.runId ?? "");
      const lastSeq = second.harness.runtime.getWorker({ worker: ref }).lastEventSeq;
      for await (const message of second.clients.observation.watchWorker({ worker: ref, afterCursor: savedCursor })) {
        resumed.push(...message.events.filter((e) => e.seq > 0n).map((e) => e.seq));
        // A batch may run past lastSeq: the run reads COMPLETED before its worker update is emitted.
        if ((resumed.at(-1) ?? 0n) >= lastSeq) break;
      }
      const last = resumed.at(-1) ?? 0n;
      expect(last).toBeGreaterThanOrEqual(lastSeq);
      expect(resumed).toEqual(Array.from({ length: Number(last - cursor) }, (_, i) => cursor + BigInt(i + 1)));
    } finally {
      await second.harness.close();
    }
  });

  it("restores a worker as it was last announced, its update time included", async () => {
    const first = await serve();
    const runtimeId = first.harness.runtime.runtimeId;
    const { worker } = await first.clients.catalog.createWorker({ runtimeId });
    const ref = create(WorkerRefSchema, { runtimeId, workerId: worker?.ref?.workerId ?? "" });
    const sent = await first.clients.interaction.sendInput({ worker: ref, input: { text: "one" } });
    await completed(first.clients, ref, sent.run?.runId ?? "");
    await eventually(async () => first.harness.runtime.getWorker({ worker: ref }).status === WorkerStatus.IDLE);
    const before = first.harness.runtime.getWorker({ worker: ref });
    await first.harness.close();

    const second = await serve();
    try {
      const { worker: after } = await second.clients.catalog.getWorker({ worker: ref });
      expect(after?.status).toBe(WorkerStatus.IDLE);
      expect(after?.updatedAt).toEqual(before.updatedAt);
    } finally {
      await second.harness.close();
    }
  });

  it("turns a full disk into a typed error and DEGRADED, loses nothing acknowledged, and recovers", async () => {
    let full = false;
    const faults: FileStoreFaults = {
      beforeWrite: () => {
        if (full) throw Object.assign(new Error("no space left on device"), { code: "ENOSPC" });
      },
    };
    const { harness, clients } = await serve(faults);
    try {
      const runtimeId = harness.runtime.runtimeId;
      const { worker } = await clients.catalog.createWorker({ runtimeId });
      const ref = create(WorkerRefSchema, { runtimeId, workerId: worker?.ref?.workerId ?? "" });
      const acknowledged = await clients.interaction.sendInput({ worker: ref, input: { text: "kept" } });
      await completed(clients, ref, acknowledged.run?.runId ?? "");

      full = true;
      await expectReason(
        () => clients.interaction.sendInput({ worker: ref, input: { text: "refused" } }),
        Code.Unavailable,
        ErrorReason.STORE_UNAVAILABLE,
      );
      expect((await clients.management.getRuntime({})).runtime?.status).toBe(RuntimeStatus.DEGRADED);
      const health = await clients.health.check({ service: "worker_runtime.v1.WorkerInteraction" });
      expect(health.status).toBe(ServingStatus.NOT_SERVING);
      const diagnostics = await clients.management.listDiagnostics({ minSeverity: DiagnosticSeverity.ERROR });
      expect(diagnostics.diagnostics.map((d) => d.code)).toContain("store.write_failed");
      const reads = await clients.observation.readTranscript({ worker: ref });
      expect(reads.entries).toHaveLength(2);

      full = false;
      // No write is needed to notice: the probe finds the disk writable again.
      await eventually(async () => (await clients.management.getRuntime({})).runtime?.status === RuntimeStatus.SERVING);
      const recovered = await clients.interaction.sendInput({ worker: ref, input: { text: "again" } });
      await completed(clients, ref, recovered.run?.runId ?? "");
      expect((await clients.management.getRuntime({})).runtime?.status).toBe(RuntimeStatus.SERVING);
      expect((await clients.health.check({ service: "worker_runtime.v1.WorkerInteraction" })).status).toBe(ServingStatus.SERVING);
    } finally {
      await harness.close();
    }

    const reopened = await serve();
    try {
      const ref = reopened.harness.runtime.listWorkers({
        $typeName: "worker_runtime.v1.ListWorkersRequest",
        runtimeId: reopened.harness.runtime.runtimeId,
        pageSize: 10,
        pageToken: "",
        statuses: [],
        labelSelector: {},
      }).workers[0]?.ref;
      const transcript = await reopened.clients.observation.readTranscript({ worker: ref });
      const texts = transcript.entries.map((e) => (e.content.value as { text: string }).text);
      expect(texts.slice(0, 2)).toEqual(["kept", "ok"]);
      expect(texts).toContain("again");
      expect(transcript.entries.map((e) => e.seq)).toEqual(transcript.entries.map((_, i) => BigInt(i + 1)));
    } finally {
      await reopened.harness.close();
    }
  });

  it("names a worker its restore found damaged in one diagnostic, not one from the store and another from the runtime", async () => {
    const first = await serve();
    const runtimeId = first.harness.runtime.runtimeId;
    const { worker } = await first.clients.catalog.createWorker({ runtimeId });
    const ref = create(WorkerRefSchema, { runtimeId, workerId: worker?.ref?.workerId ?? "" });
    for (const text of ["one", "two"]) {
      const { run } = await first.clients.interaction.sendInput({ worker: ref, input: { text } });
      await completed(first.clients, ref, run?.runId ?? "");
    }
    await first.harness.close();
    // The open segment is read whole at start-up: a record damaged before others quarantines the worker then.
    await damageFirstSegment(path.join(dir, "workers", ref.workerId));

    const second = await serve();
    try {
      expect((await second.clients.catalog.getWorker({ worker: ref })).worker?.status).toBe(WorkerStatus.FAILED);
      const { diagnostics } = await second.clients.management.listDiagnostics({ workerId: ref.workerId });
      expect(diagnostics.map((d) => d.code)).toEqual(["store.worker_quarantined"]);
    } finally {
      await second.harness.close();
    }
  });

  it("quarantines a worker whose sealed log a read finds damaged, and serves the others", async () => {
    const first = await serve(undefined, { segmentBytes: 300 });
    const runtimeId = first.harness.runtime.runtimeId;
    const refs: WorkerRef[] = [];
    for (let w = 0; w < 2; w++) {
      const { worker } = await first.clients.catalog.createWorker({ runtimeId });
      const ref = create(WorkerRefSchema, { runtimeId, workerId: worker?.ref?.workerId ?? "" });
      refs.push(ref);
      for (let i = 0; i < 6; i++) {
        const { run } = await first.clients.interaction.sendInput({ worker: ref, input: { text: `message ${i}` } });
        await completed(first.clients, ref, run?.runId ?? "");
      }
    }
    await first.harness.close();
    const [damaged, healthy] = refs as [WorkerRef, WorkerRef];
    await damageFirstSegment(path.join(dir, "workers", damaged.workerId));

    const second = await serve(undefined, { segmentBytes: 300 });
    try {
      // A sealed segment is trusted at open (checking them all would make start-up cost grow
      // with history); the damage is found by the first read.
      expect((await second.clients.catalog.getWorker({ worker: damaged })).worker?.status).toBe(WorkerStatus.IDLE);
      await expectReason(
        () => second.clients.observation.readTranscript({ worker: damaged, position: { case: "afterSeq", value: 0n } }),
        Code.DataLoss,
        ErrorReason.WORKER_FAILED,
      );
      await eventually(async () => (await second.clients.catalog.getWorker({ worker: damaged })).worker?.status === WorkerStatus.FAILED);
      const diagnostics = await second.clients.management.listDiagnostics({ workerId: damaged.workerId });
      expect(diagnostics.diagnostics.map((d) => d.code)).toContain("store.worker_quarantined");
      await expectReason(
        () => second.clients.interaction.sendInput({ worker: damaged, input: { text: "more" } }),
        Code.FailedPrecondition,
        ErrorReason.WORKER_FAILED,
      );
      const { run } = await second.clients.interaction.sendInput({ worker: healthy, input: { text: "still works" } });
      await completed(second.clients, healthy, run?.runId ?? "");
      const transcript = await second.clients.observation.readTranscript({
        worker: healthy,
        position: { case: "afterSeq", value: 0n },
        limit: 100,
      });
      expect(transcript.entries).toHaveLength(14);
    } finally {
      await second.harness.close();
    }
  });
});
