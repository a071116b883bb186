import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { WorkerStatus } from "../../gen/worker_runtime/v1/worker_pb.js";
import { createMemoryStore, type RuntimeStore } from "../../src/runtime/index.js";
import { eventually, type Harness, startHarness } from "../support/harness.js";

/**
 * A memory store whose deleteWorker forgets the worker at once, as the
 * file store does at its rename, and settles only when the test lets it,
 * as a slow directory fsync would. It counts the transcript and run reads
 * that reach it, so the test knows when they have.
 */
function slowDeleteStore(): { store: RuntimeStore; forgotten: Promise<void>; finish(): void; reads(): number } {
  const inner = createMemoryStore();
  let forgot = (): void => {};
  const forgotten = new Promise<void>((resolve) => (forgot = resolve));
  let finish = (): void => {};
  const finished = new Promise<void>((resolve) => (finish = resolve));
  let reads = 0;
  const store: RuntimeStore = Object.assign(Object.create(inner) as RuntimeStore, {
    deleteWorker: async (workerId: string): Promise<void> => {
      await inner.deleteWorker(workerId);
      forgot();
      await finished;
    },
    readTranscript: (...args: Parameters<RuntimeStore["readTranscript"]>) => {
      reads++;
      return inner.readTranscript(...args);
    },
    listRuns: (...args: Parameters<RuntimeStore["listRuns"]>) => {
      reads++;
      return inner.listRuns(...args);
    },
  });
  return { store, forgotten, finish: () => finish(), reads: () => reads };
}

/**
 * Reads of a worker whose delete is between the store forgetting it and the
 * store's delete settling. The worker is listed until the delete succeeds
 * (the streams are told NOT_FOUND only then, failed-delete-streams.test.ts),
 * so reads reach the store, which no longer knows the worker: they answered
 * INTERNAL ("unknown worker" in the log). They answer as the worker's
 * streams end instead, with the delete's outcome: NOT_FOUND once deleted.
 * A real server on 127.0.0.1, the generated clients over HTTP/2.
 */
let harness: Harness;
let slow: ReturnType<typeof slowDeleteStore>;

beforeAll(async () => {
  slow = slowDeleteStore();
  harness = await startHarness({ runtimeId: "rt-reads", store: slow.store });
});

afterAll(async () => {
  slow?.finish();
  await harness?.close();
});

describe("reads of a worker while the store deletes it", () => {
  it("answer with the delete's NOT_FOUND, not INTERNAL", async () => {
    const clients = harness.connect("grpc");
    const worker = (await clients.catalog.createWorker({ runtimeId: "rt-reads" })).worker?.ref as WorkerRef;
    const deleted = clients.catalog.deleteWorker({ worker, force: true });
    await slow.forgotten;

    // Still the catalog's until the store's delete succeeds.
    expect((await clients.catalog.getWorker({ worker })).worker?.status).toBe(WorkerStatus.STOPPED);
    const reads = [
      clients.observation.readTranscript({ worker, limit: 10 }),
      clients.observation.readTranscript({ worker, position: { case: "afterSeq", value: 0n }, limit: 10 }),
      clients.interaction.listRuns({ worker }),
    ].map((read) =>
      read.then(
        () => "answered",
        (error: unknown) => ConnectError.from(error),
      ),
    );
    await eventually(() => slow.reads() === 3, 10_000, "the three reads at the store");
    slow.finish();
    await deleted;

    for (const answer of await Promise.all(reads)) {
      expect(answer).toBeInstanceOf(ConnectError);
      const error = answer as ConnectError;
      expect([error.code, error.rawMessage]).toEqual([Code.NotFound, `worker ${worker.workerId} was deleted`]);
    }
  });
});
