import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorDetailSchema, ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Runtime } from "../../src/runtime/index.js";
import type { BackendWithRemote } from "../support/backend-with-remote.js";
import type { FakeOpenAI } from "../support/fake-openai.js";
import { type Clients, eventually } from "../support/harness.js";
import { startSharedWatchSetup, useWatchReaders } from "./shared-watch-setup.js";
import type { WorkerWatchReader } from "./worker-watch-reader.js";

/**
 * The Backend bounds the watches it relays, as a Runtime bounds its own
 * (watch-slot.ts): WatchWorker streams per watched worker
 * (maxWatchersPerWorker) and every relayed watch in total (maxWatchers);
 * one over either is RESOURCE_EXHAUSTED / LIMIT_EXCEEDED naming the bound,
 * and a client that leaves frees its place at once. A real remote runtime
 * server, the Backend on its own port, gRPC and Connect JSON clients.
 */

let fake: FakeOpenAI;
let remote: Runtime;
let served: BackendWithRemote;
let via: Record<"grpc" | "connect" | "console" | "direct", Clients>;
const watch = useWatchReaders(() => remote);

beforeAll(async () => {
  ({ fake, remote, served, via } = await startSharedWatchSetup({
    backend: { maxWatchersPerWorker: 3, maxWatchers: 5, workerWatchLingerMs: 100 },
  }));
}, 60_000);

afterAll(async () => {
  await served?.close();
  await fake?.close();
});

async function newWorker(): Promise<WorkerRef> {
  return (await via.grpc.catalog.createWorker({ runtimeId: "rs" })).worker?.ref as WorkerRef;
}

async function opened(...watches: WorkerWatchReader[]): Promise<void> {
  await eventually(() => watches.every((w) => w.messages.length > 0 || w.ended !== undefined), 10_000, "every snapshot");
  for (const w of watches) expect(w.ended).toBeUndefined();
}

async function refused(reader: WorkerWatchReader, limit: number): Promise<ConnectError> {
  await eventually(() => reader.ended !== undefined, 10_000, "the watch over the bound ended");
  const error = reader.ended;
  if (!(error instanceof ConnectError)) throw new Error(`ended ${String(error)}, not refused`);
  expect(error.code).toBe(Code.ResourceExhausted);
  const detail = error.findDetails(ErrorDetailSchema)[0];
  expect(detail?.reason).toBe(ErrorReason.LIMIT_EXCEEDED);
  expect(detail?.metadata.limit).toBe(String(limit));
  return error;
}

describe("watches relayed through the Backend", () => {
  it("refuses a worker's watch past maxWatchersPerWorker, and takes one again once a client leaves", async () => {
    const worker = await newWorker();
    const first = [watch(via.grpc, worker), watch(via.connect, worker), watch(via.grpc, worker)];
    await opened(...first);
    const over = watch(via.connect, worker);
    const error = await refused(over, 3);
    expect(error.rawMessage).toContain(worker.workerId);
    // The others are untouched, and a place freed is taken again.
    for (const w of first) expect(w.ended).toBeUndefined();
    first[0]?.close();
    const again = watch(via.grpc, worker);
    await eventually(() => again.messages.length > 0 || again.ended !== undefined, 10_000, "the watch after one left");
    expect(again.ended).toBeUndefined();
  });

  it("refuses any watch past maxWatchers in total, WatchRuntime included", async () => {
    const [a, b] = [await newWorker(), await newWorker()];
    const taken = [watch(via.grpc, a), watch(via.grpc, a), watch(via.grpc, a), watch(via.connect, b), watch(via.connect, b)];
    await opened(...taken);
    await refused(watch(via.grpc, b), 5);
    // A WatchRuntime counts against the same total.
    const runtimeWatch = via.grpc.observation.watchRuntime({ runtimeId: "rs" });
    const failure = await runtimeWatch[Symbol.asyncIterator]()
      .next()
      .then(
        () => undefined,
        (e: unknown) => ConnectError.from(e),
      );
    expect(failure?.code).toBe(Code.ResourceExhausted);
    expect(failure?.findDetails(ErrorDetailSchema)[0]?.metadata.limit).toBe("5");
  });
});
