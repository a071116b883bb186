import { readdir } from "node:fs/promises";
import * as path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { StoreWriteError } from "../../src/runtime/store.js";
import { entries, events, NO_REQUEST, openStore, run, tempDataDir, workerRecord } from "./fs-support.js";

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => ({ dir, cleanup } = await tempDataDir()));
afterEach(async () => cleanup());

describe("file store worker creation and deletion ordering", () => {
  it("applies two puts of a new worker issued in the same tick in call order", async () => {
    const { store } = await openStore(dir);
    await Promise.all([store.putWorker(workerRecord("w1", "first")), store.putWorker(workerRecord("w1", "second"))]);
    await store.close();

    const { store: reopened, opened } = await openStore(dir);
    expect(opened.diagnostics).toEqual([]);
    expect(opened.workers.map((w) => w.record.worker.displayName)).toEqual(["second"]);
    expect(await readdir(path.join(dir, "workers"))).toEqual(["w1"]);
    await reopened.close();
  });

  it("applies a delete issued in the same tick as the creating put", async () => {
    const { store } = await openStore(dir);
    await Promise.all([store.putWorker(workerRecord("w1")), store.deleteWorker("w1")]);
    await expect(store.appendEvents("w1", events(1, 1))).rejects.toBeInstanceOf(StoreWriteError);
    await store.close();

    const { store: reopened, opened } = await openStore(dir);
    expect(opened.workers).toEqual([]);
    await reopened.close();
  });

  it("re-creates a worker put right after its delete, in the same tick", async () => {
    const { store } = await openStore(dir);
    await store.putWorker(workerRecord("w1", "old"));
    await store.appendEvents("w1", events(1, 3));
    await Promise.all([store.deleteWorker("w1"), store.putWorker(workerRecord("w1", "new"))]);
    expect(store.earliestEventSeq("w1")).toBe(1n);
    await store.close();

    const { store: reopened, opened } = await openStore(dir);
    expect(opened.workers.map((w) => [w.record.worker.displayName, w.lastEventSeq])).toEqual([["new", 0n]]);
    await reopened.close();
  });

  it("refuses writes to a deleted worker with StoreWriteError", async () => {
    const { store } = await openStore(dir);
    await store.putWorker(workerRecord("w1"));
    await store.deleteWorker("w1");
    await expect(store.putRun("w1", run("r1", RunStatus.QUEUED), NO_REQUEST)).rejects.toBeInstanceOf(StoreWriteError);
    await expect(store.appendEvents("w1", events(1, 1))).rejects.toBeInstanceOf(StoreWriteError);
    await expect(store.appendTranscript("w1", entries(1, 1))).rejects.toBeInstanceOf(StoreWriteError);
    await store.close();
  });
});
