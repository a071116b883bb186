import { create } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { CreateWorkerRequestSchema, ListWorkersRequestSchema } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { ConnectivityState, WorkerStatus } from "../../gen/worker_runtime/v1/worker_pb.js";
import { expectReason } from "../support/errors.js";
import { PROTOCOLS, startHarness, type Clients, type Harness } from "../support/harness.js";
import { ScriptedBackend } from "../support/scripted-backend.js";
import { STORE_FACTORIES } from "../support/stores.js";

describe.each(STORE_FACTORIES)("worker catalog ($name store)", (storeFactory) => {
  describe.each(PROTOCOLS)("over %s", (protocol) => {
    let harness: Harness;
    let clients: Clients;
    let runtimeId: string;
    let cleanup: () => Promise<void>;

    beforeAll(async () => {
      const { store, cleanup: clean } = await storeFactory.create();
      cleanup = clean;
      harness = await startHarness({ store, executionBackend: new ScriptedBackend() });
      clients = harness.connect(protocol);
      runtimeId = harness.runtime.runtimeId;
    });
    afterAll(async () => {
      await harness.close();
      await cleanup();
    });

    it("creates, gets, stops and deletes a worker", async () => {
      const { worker } = await clients.catalog.createWorker({ runtimeId, displayName: "first", labels: { team: "a" } });
      expect(worker?.ref?.runtimeId).toBe(runtimeId);
      expect(worker?.status).toBe(WorkerStatus.IDLE);
      expect(worker?.connectivity?.state).toBe(ConnectivityState.CONNECTED);
      expect(worker?.profile?.source).toEqual({ case: "builtin", value: "companion" });

      const got = await clients.catalog.getWorker({ worker: worker?.ref });
      expect(got.worker?.displayName).toBe("first");

      await expectReason(
        () => clients.catalog.deleteWorker({ worker: worker?.ref }),
        Code.FailedPrecondition,
        ErrorReason.WORKER_NOT_STOPPED,
      );
      const stopped = await clients.catalog.stopWorker({ worker: worker?.ref });
      expect(stopped.worker?.status).toBe(WorkerStatus.STOPPED);
      const again = await clients.catalog.stopWorker({ worker: worker?.ref });
      expect(again.worker?.status).toBe(WorkerStatus.STOPPED);
      await expectReason(
        () => clients.interaction.sendInput({ worker: worker?.ref, input: { text: "hi" } }),
        Code.FailedPrecondition,
        ErrorReason.WORKER_STOPPED,
      );

      await clients.catalog.deleteWorker({ worker: worker?.ref });
      await expectReason(() => clients.catalog.getWorker({ worker: worker?.ref }), Code.NotFound, ErrorReason.NOT_FOUND);
    });

    it("force-deletes a running worker", async () => {
      const { worker } = await clients.catalog.createWorker({ runtimeId });
      await clients.catalog.deleteWorker({ worker: worker?.ref, force: true });
      await expectReason(() => clients.catalog.getWorker({ worker: worker?.ref }), Code.NotFound, ErrorReason.NOT_FOUND);
    });

    it("lists workers in creation order, paginated and filtered", async () => {
      const label = `list-${protocol}`;
      const created: string[] = [];
      for (let i = 0; i < 7; i++) {
        const { worker } = await clients.catalog.createWorker({
          runtimeId,
          labels: { suite: label, parity: i % 2 === 0 ? "even" : "odd" },
        });
        created.push(worker?.ref?.workerId ?? "");
      }
      const firstStopped = created[0] ?? "";
      await clients.catalog.stopWorker({ worker: { runtimeId, workerId: firstStopped } });

      const seen: string[] = [];
      let pageToken = "";
      let pages = 0;
      do {
        const page = await clients.catalog.listWorkers({ runtimeId, pageSize: 3, pageToken, labelSelector: { suite: label } });
        expect(page.workers.length).toBeLessThanOrEqual(3);
        seen.push(...page.workers.map((w) => w.ref?.workerId ?? ""));
        pageToken = page.nextPageToken;
        pages++;
      } while (pageToken !== "");
      expect(seen).toEqual(created);
      expect(pages).toBe(3);

      const even = await clients.catalog.listWorkers({ runtimeId, labelSelector: { suite: label, parity: "even" } });
      expect(even.workers.map((w) => w.ref?.workerId)).toEqual(created.filter((_, i) => i % 2 === 0));

      const stopped = await clients.catalog.listWorkers({ runtimeId, statuses: [WorkerStatus.STOPPED], labelSelector: { suite: label } });
      expect(stopped.workers.map((w) => w.ref?.workerId)).toEqual([firstStopped]);
    });

    it("returns the same worker for a repeated request_id and refuses changed content", async () => {
      const requestId = `create-${protocol}-${storeFactory.name}`;
      const first = await clients.catalog.createWorker({ runtimeId, requestId, displayName: "idem" });
      const second = await clients.catalog.createWorker({ runtimeId, requestId, displayName: "idem" });
      expect(second.worker?.ref?.workerId).toBe(first.worker?.ref?.workerId);
      await expectReason(
        () => clients.catalog.createWorker({ runtimeId, requestId, displayName: "other" }),
        Code.AlreadyExists,
        ErrorReason.IDEMPOTENCY_CONFLICT,
      );
    });

    it("shows the runtime summary with counts and capabilities", async () => {
      const { runtime } = await clients.management.getRuntime({});
      expect(runtime?.runtimeId).toBe(runtimeId);
      expect(runtime?.capabilities?.executionAvailable).toBe(true);
      expect(runtime?.capabilities?.profiles.map((p) => p.name)).toContain("companion");
      const counts = runtime?.workerCounts;
      const total = (counts?.idle ?? 0) + (counts?.running ?? 0) + (counts?.stopped ?? 0) + (counts?.failed ?? 0);
      const listed = await clients.catalog.listWorkers({ runtimeId, pageSize: 500 });
      expect(total).toBe(listed.workers.length);
    });
  });
});

describe("a runtime with no execution backend", () => {
  it("shows workers NOT_CONNECTED and refuses their input with the typed detail", async () => {
    const harness = await startHarness();
    try {
      for (const protocol of PROTOCOLS) {
        const clients = harness.connect(protocol);
        const runtimeId = harness.runtime.runtimeId;
        const { worker } = await clients.catalog.createWorker({ runtimeId });
        expect(worker?.connectivity?.state).toBe(ConnectivityState.NOT_CONNECTED);
        expect(worker?.connectivity?.reason).toMatch(/no execution backend/);
        const detail = await expectReason(
          () => clients.interaction.sendInput({ worker: worker?.ref, input: { text: "hello" } }),
          Code.FailedPrecondition,
          ErrorReason.WORKER_NOT_CONNECTED,
        );
        expect(detail.metadata["reason"]).toMatch(/no execution backend/);
        const transcript = await clients.observation.readTranscript({ worker: worker?.ref });
        expect(transcript.entries).toEqual([]);
      }
    } finally {
      await harness.close();
    }
  });
});

describe("ListWorkers order", () => {
  it("lists workers created within one millisecond in the order they were created", async () => {
    const harness = await startHarness({});
    try {
      const runtimeId = harness.runtime.runtimeId;
      const names = Array.from({ length: 40 }, (_, i) => `w${String(i).padStart(2, "0")}`);
      // In-process and back to back: many creations share a millisecond.
      for (const displayName of names) await harness.runtime.createWorker(create(CreateWorkerRequestSchema, { runtimeId, displayName }));
      const { workers } = harness.runtime.listWorkers(create(ListWorkersRequestSchema, { runtimeId, pageSize: 100 }));
      expect(workers.map((worker) => worker.displayName)).toEqual(names);
    } finally {
      await harness.close();
    }
  });
});

describe("RuntimeManagement runtime_id", () => {
  it("answers for an empty or its own runtime_id and refuses another with RUNTIME_MISMATCH", async () => {
    const harness = await startHarness({});
    try {
      const clients = harness.connect("grpc");
      const runtimeId = harness.runtime.runtimeId;
      expect((await clients.management.getRuntime({})).runtime?.runtimeId).toBe(runtimeId);
      expect((await clients.management.getRuntime({ runtimeId })).runtime?.runtimeId).toBe(runtimeId);
      await expectReason(
        () => clients.management.getRuntime({ runtimeId: "rt-other" }),
        Code.InvalidArgument,
        ErrorReason.RUNTIME_MISMATCH,
      );
      await expectReason(
        () => clients.management.listDiagnostics({ runtimeId: "rt-other" }),
        Code.InvalidArgument,
        ErrorReason.RUNTIME_MISMATCH,
      );
      await expectReason(
        () => clients.management.listConfigBundles({ runtimeId: "rt-other" }),
        Code.InvalidArgument,
        ErrorReason.RUNTIME_MISMATCH,
      );
    } finally {
      await harness.close();
    }
  });
});
