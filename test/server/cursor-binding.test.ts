import { Code } from "@connectrpc/connect";
import { mkdtemp, rm } from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { createFileStore } from "../../src/store/fs/index.js";
import { cursorAt, runtimeCursor, workerCursor } from "../support/cursors.js";
import { expectReason } from "../support/errors.js";
import { PROTOCOLS, startHarness, type Clients, type Harness } from "../support/harness.js";

/**
 * Defect 11 of issue 7: a cursor must name the stream it belongs to —
 * worker, runtime and store — and a foreign one is INVALID_ARGUMENT +
 * CURSOR_FOREIGN, never a replay of someone else's events from its seq.
 */
const harnesses: Harness[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const harness of harnesses.splice(0)) await harness.close();
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function started(options: Parameters<typeof startHarness>[0] = {}): Promise<Harness> {
  const harness = await startHarness(options);
  harnesses.push(harness);
  return harness;
}

async function newWorker(clients: Clients, runtimeId: string): Promise<WorkerRef> {
  const { worker } = await clients.catalog.createWorker({ runtimeId });
  if (!worker?.ref) throw new Error("no worker");
  return worker.ref;
}

/** Opens WatchWorker and reads its first message (the refusal, if any, comes here). */
async function firstMessage(clients: Clients, worker: WorkerRef, afterCursor: string): Promise<unknown> {
  for await (const message of clients.observation.watchWorker({ worker, afterCursor })) return message;
  return undefined;
}

async function firstRuntimeMessage(clients: Clients, runtimeId: string, afterCursor: string): Promise<unknown> {
  for await (const message of clients.observation.watchRuntime({ runtimeId, afterCursor })) return message;
  return undefined;
}

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "wr-cursor-"));
  dirs.push(dir);
  return dir;
}

describe.each(PROTOCOLS)("cursor binding over %s", (protocol) => {
  it("refuses a cursor of another worker's stream with CURSOR_FOREIGN", async () => {
    const harness = await started();
    const clients = harness.connect(protocol);
    const runtimeId = harness.runtime.runtimeId;
    const a = await newWorker(clients, runtimeId);
    const b = await newWorker(clients, runtimeId);
    const cursorOfA = await workerCursor(clients, a);
    // Its own stream takes it...
    expect(await firstMessage(clients, a, cursorOfA)).toBeDefined();
    // ...another worker's does not, though both are at the same seq.
    const detail = await expectReason(() => firstMessage(clients, b, cursorOfA), Code.InvalidArgument, ErrorReason.CURSOR_FOREIGN);
    expect(detail.metadata["field"]).toBe("after_cursor");
    // The runtime-wide stream refuses a worker cursor too.
    await expectReason(() => firstRuntimeMessage(clients, runtimeId, cursorOfA), Code.InvalidArgument, ErrorReason.CURSOR_FOREIGN);
  });

  it("refuses a cursor of another runtime, also one with the same runtime id", async () => {
    const one = await started({ runtimeId: "rt-same" });
    const two = await started({ runtimeId: "rt-same" });
    const other = await started();
    const clientsOne = one.connect(protocol);
    const clientsTwo = two.connect(protocol);
    const clientsOther = other.connect(protocol);
    const w1 = await newWorker(clientsOne, "rt-same");
    const w2 = await newWorker(clientsTwo, "rt-same");
    const fromOne = await workerCursor(clientsOne, w1);
    await expectReason(() => firstMessage(clientsTwo, w2, fromOne), Code.InvalidArgument, ErrorReason.CURSOR_FOREIGN);

    // Same runtime id, same stream letter, same seq: only the store tells the streams apart.
    const runtimeFromOne = await runtimeCursor(clientsOne, "rt-same");
    expect(await firstRuntimeMessage(clientsOne, "rt-same", runtimeFromOne)).toBeDefined();
    await expectReason(() => firstRuntimeMessage(clientsTwo, "rt-same", runtimeFromOne), Code.InvalidArgument, ErrorReason.CURSOR_FOREIGN);
    const otherId = other.runtime.runtimeId;
    await expectReason(() => firstRuntimeMessage(clientsOther, otherId, runtimeFromOne), Code.InvalidArgument, ErrorReason.CURSOR_FOREIGN);
  });

  it("keeps cursors valid across a restart on the same data dir, and refuses them on a replaced one", async () => {
    const dir = await tempDir();
    const first = await started({ runtimeId: "rt-fs", store: createFileStore({ dataDir: dir }) });
    const clients = first.connect(protocol);
    const worker = await newWorker(clients, "rt-fs");
    const workerAt = await workerCursor(clients, worker);
    const runtimeAt = await runtimeCursor(clients, "rt-fs");
    harnesses.splice(harnesses.indexOf(first), 1);
    await first.close();

    const restarted = await started({ runtimeId: "rt-fs", store: createFileStore({ dataDir: dir }) });
    const after = restarted.connect(protocol);
    expect(await firstMessage(after, worker, workerAt)).toBeDefined();
    expect(await firstMessage(after, worker, cursorAt(workerAt, 0n))).toBeDefined();
    expect(await firstRuntimeMessage(after, "rt-fs", runtimeAt)).toBeDefined();
    harnesses.splice(harnesses.indexOf(restarted), 1);
    await restarted.close();

    // The data dir is replaced (wiped) and the same runtime id configured: old cursors point
    // into history that no longer exists, whatever their seq.
    await rm(dir, { recursive: true, force: true });
    const replaced = await started({ runtimeId: "rt-fs", store: createFileStore({ dataDir: dir }) });
    const clientsReplaced = replaced.connect(protocol);
    await newWorker(clientsReplaced, "rt-fs");
    await expectReason(() => firstRuntimeMessage(clientsReplaced, "rt-fs", runtimeAt), Code.InvalidArgument, ErrorReason.CURSOR_FOREIGN);
  });
});
