import { Code } from "@connectrpc/connect";
import { mkdtemp, rm } from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import type { WatchRuntimeResponse } from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import { createFileStore } from "../../src/store/fs/index.js";
import { expectReason } from "../support/errors.js";
import { PROTOCOLS, startHarness, type Clients, type Harness } from "../support/harness.js";
import { ScriptedBackend } from "../support/scripted-backend.js";
import { STORE_FACTORIES } from "../support/stores.js";

/** Ids of the workers a runtime lists (first page is enough here). */
async function listedWorkerIds(clients: Clients, runtimeId: string): Promise<string[]> {
  const { workers } = await clients.catalog.listWorkers({ runtimeId, pageSize: 500 });
  return workers.map((worker) => worker.ref?.workerId ?? "");
}

/** The next message of a stream that carries events. */
async function nextEvents(stream: AsyncIterator<WatchRuntimeResponse>): Promise<WatchRuntimeResponse> {
  for (;;) {
    const { value, done } = await stream.next();
    if (done) throw new Error("stream ended");
    if (value.events.length > 0) return value;
  }
}

describe.each(STORE_FACTORIES)("CreateWorker ($name store)", (storeFactory) => {
  describe.each(PROTOCOLS)("over %s", (protocol) => {
    describe("without an execution backend", () => {
      let harness: Harness;
      let clients: Clients;
      let cleanup: () => Promise<void>;
      beforeAll(async () => {
        const created = await storeFactory.create();
        cleanup = created.cleanup;
        harness = await startHarness({ store: created.store });
        clients = harness.connect(protocol);
      });
      afterAll(async () => {
        await harness.close();
        await cleanup();
      });

      it("refuses an initial input it cannot run before creating anything", async () => {
        const runtimeId = harness.runtime.runtimeId;
        const abort = new AbortController();
        const stream = clients.observation.watchRuntime({ runtimeId }, { signal: abort.signal })[Symbol.asyncIterator]();
        try {
          const first = await stream.next();
          expect(first.value?.snapshot).toBeDefined();
          for (let attempt = 0; attempt < 2; attempt++) {
            await expectReason(
              () => clients.catalog.createWorker({ runtimeId, initialInput: { text: "hello" } }),
              Code.FailedPrecondition,
              ErrorReason.WORKER_NOT_CONNECTED,
            );
          }
          expect(await listedWorkerIds(clients, runtimeId)).toEqual([]);
          // The next runtime events are this worker's: the refused creates announced nothing.
          const { worker } = await clients.catalog.createWorker({ runtimeId });
          const named: string[] = [];
          while (!named.includes("created")) {
            for (const event of (await nextEvents(stream)).events) {
              const kind = event.kind;
              if (kind.case === "workerCreated") named.push(kind.value.ref?.workerId ?? "", "created");
              else if (kind.case === "workerUpdated") named.push(kind.value.ref?.workerId ?? "");
              else named.push(`unexpected ${kind.case}`);
            }
          }
          expect(new Set(named)).toEqual(new Set([worker?.ref?.workerId, "created"]));
          expect(await listedWorkerIds(clients, runtimeId)).toEqual([worker?.ref?.workerId]);
        } finally {
          abort.abort();
        }
      });
    });

    describe("with an execution backend", () => {
      let harness: Harness;
      let clients: Clients;
      let cleanup: () => Promise<void>;
      beforeAll(async () => {
        const created = await storeFactory.create();
        cleanup = created.cleanup;
        harness = await startHarness({ store: created.store, executionBackend: new ScriptedBackend() });
        clients = harness.connect(protocol);
      });
      afterAll(async () => {
        await harness.close();
        await cleanup();
      });

      it("creates the worker and starts its initial input", async () => {
        const runtimeId = harness.runtime.runtimeId;
        const response = await clients.catalog.createWorker({ runtimeId, initialInput: { text: "hello" } });
        expect(response.initialInputError).toBeUndefined();
        expect(response.initialRun?.input?.text).toBe("hello");
        const { run } = await clients.interaction.getRun({ worker: response.worker?.ref, runId: response.initialRun?.runId ?? "" });
        expect(run?.input?.text).toBe("hello");
        expect(await listedWorkerIds(clients, runtimeId)).toContain(response.worker?.ref?.workerId);
      });

      it("creates one worker for 20 concurrent calls with one request_id", async () => {
        const runtimeId = harness.runtime.runtimeId;
        const before = await listedWorkerIds(clients, runtimeId);
        const request = { runtimeId, displayName: "once", requestId: "concurrent-create", initialInput: { text: "hi" } };
        const responses = await Promise.all(Array.from({ length: 20 }, () => clients.catalog.createWorker(request)));
        const ids = new Set(responses.map((response) => response.worker?.ref?.workerId));
        expect(ids.size).toBe(1);
        // One initial run: callers that shared the creation see it, later repeats get the worker only.
        const runIds = responses.map((response) => response.initialRun?.runId).filter((id) => id !== undefined);
        expect(new Set(runIds).size).toBe(1);
        const after = await listedWorkerIds(clients, runtimeId);
        expect(after.filter((id) => !before.includes(id))).toEqual([...ids]);
      });

      it("refuses a concurrent call with the same request_id and other content", async () => {
        const runtimeId = harness.runtime.runtimeId;
        const before = await listedWorkerIds(clients, runtimeId);
        const first = clients.catalog.createWorker({ runtimeId, displayName: "a", requestId: "concurrent-conflict" });
        const second = clients.catalog.createWorker({ runtimeId, displayName: "b", requestId: "concurrent-conflict" });
        const [created, conflict] = await Promise.allSettled([first, second]);
        expect(created.status).toBe("fulfilled");
        const settled = (): Promise<unknown> => (conflict.status === "rejected" ? Promise.reject(conflict.reason) : Promise.resolve());
        await expectReason(settled, Code.AlreadyExists, ErrorReason.IDEMPOTENCY_CONFLICT);
        const after = await listedWorkerIds(clients, runtimeId);
        expect(after.length - before.length).toBe(1);
      });
    });
  });
});

describe("CreateWorker when the initial run cannot be recorded", () => {
  let harness: Harness | undefined;
  let dataDir: string;
  afterEach(async () => {
    await harness?.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  it("creates the worker and reports the input's refusal in the response", async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), "wr-create-"));
    let runsFull = false;
    const beforeWrite = (file: string): void => {
      if (runsFull && /runs/.test(file)) throw Object.assign(new Error("no space left on device"), { code: "ENOSPC" });
    };
    harness = await startHarness({ store: createFileStore({ dataDir, faults: { beforeWrite } }), executionBackend: new ScriptedBackend() });
    const clients = harness.connect("grpc");
    const runtimeId = harness.runtime.runtimeId;
    runsFull = true;
    const response = await clients.catalog.createWorker({ runtimeId, initialInput: { text: "hello" } });
    expect(response.worker?.ref?.workerId).not.toBe("");
    expect(response.initialRun).toBeUndefined();
    expect(response.initialInputError?.reason).toBe(ErrorReason.STORE_UNAVAILABLE);
    runsFull = false;
    const { runs } = await clients.interaction.listRuns({ worker: response.worker?.ref });
    expect(runs).toEqual([]);
  });
});
