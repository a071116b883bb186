import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { StoreSequenceError, StoreWriteError } from "../../src/runtime/store.js";
import type { FileStoreFaults } from "../../src/store/fs/index.js";
import { events, eventText, NO_REQUEST, openStore, run, tempDataDir, workerRecord } from "./fs-support.js";

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => ({ dir, cleanup } = await tempDataDir()));
afterEach(async () => cleanup());

/** A disk that reports ENOSPC for matching files while `full` is set. */
function fullDisk(stage: "write" | "sync", match: RegExp): { faults: FileStoreFaults; set: (full: boolean) => void } {
  let full = false;
  const fail = (file: string): void => {
    if (full && match.test(file)) throw Object.assign(new Error("no space left on device"), { code: "ENOSPC" });
  };
  const faults: FileStoreFaults = stage === "write" ? { beforeWrite: fail } : { beforeSync: fail };
  return { faults, set: (value) => (full = value) };
}

describe("file store write failures", () => {
  it("reads see a run version from putRun on; a failed one leaves the previous version", async () => {
    const disk = fullDisk("write", /runs/);
    const { store } = await openStore(dir, { faults: disk.faults });
    await store.putWorker(workerRecord("w1"));
    await store.putRun("w1", run("r1", RunStatus.QUEUED), NO_REQUEST);

    const stored = store.putRun("w1", run("r1", RunStatus.COMPLETED), NO_REQUEST);
    expect((await store.getRun("w1", "r1"))?.status).toBe(RunStatus.COMPLETED);
    expect((await store.listRuns("w1", undefined, 1))[0]?.run.status).toBe(RunStatus.COMPLETED);
    await stored;
    expect((await store.getRun("w1", "r1"))?.status).toBe(RunStatus.COMPLETED);

    disk.set(true);
    const failed = store.putRun("w1", run("r1", RunStatus.FAILED), NO_REQUEST);
    expect((await store.getRun("w1", "r1"))?.status).toBe(RunStatus.FAILED);
    await expect(failed).rejects.toBeInstanceOf(StoreWriteError);
    expect((await store.getRun("w1", "r1"))?.status).toBe(RunStatus.COMPLETED);
    expect((await store.listRuns("w1", undefined, 1))[0]?.run.status).toBe(RunStatus.COMPLETED);
    disk.set(false);
    await store.close();
  });

  it("rejects with StoreWriteError on ENOSPC, refuses later seqs, and recovers when space returns", async () => {
    const disk = fullDisk("write", /events/);
    const { store } = await openStore(dir, { faults: disk.faults });
    await store.putWorker(workerRecord("w1"));
    await store.appendEvents("w1", events(1, 5));

    disk.set(true);
    const failed = store.appendEvents("w1", events(6, 6));
    const queued = store.appendEvents("w1", events(7, 7));
    const error = await failed.catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StoreWriteError);
    expect((error as StoreWriteError).cause).toMatchObject({ code: "ENOSPC" });
    await expect(queued).rejects.toBeInstanceOf(StoreSequenceError);
    await expect(store.appendEvents("w1", events(6, 6))).rejects.toBeInstanceOf(StoreWriteError);

    disk.set(false);
    await store.appendEvents("w1", events(6, 8));
    expect((await store.readEvents("w1", 0n, 100)).map((e) => e.seq)).toEqual([1n, 2n, 3n, 4n, 5n, 6n, 7n, 8n]);
    await store.close();

    const reopened = await openStore(dir);
    expect(reopened.opened.diagnostics).toEqual([]);
    expect(reopened.opened.workers[0]?.lastEventSeq).toBe(8n);
    await reopened.store.close();
  });

  it("drops a batch that was written but not made durable before the next write", async () => {
    const disk = fullDisk("sync", /events\/\d+\.log/);
    const { store } = await openStore(dir, { faults: disk.faults });
    await store.putWorker(workerRecord("w1"));
    await store.appendEvents("w1", events(1, 3));

    disk.set(true);
    await expect(store.appendEvents("w1", events(4, 6))).rejects.toBeInstanceOf(StoreWriteError);
    disk.set(false);
    const replacement = { seq: 4n, bytes: Buffer.from("replacement-4") };
    await store.appendEvents("w1", [replacement]);
    await store.close();

    const reopened = await openStore(dir);
    expect(reopened.opened.diagnostics).toEqual([]);
    expect(reopened.opened.workers[0]?.lastEventSeq).toBe(4n);
    expect((await reopened.store.readEvents("w1", 2n, 10)).map(eventText)).toEqual(["event-3", "replacement-4"]);
    await reopened.store.close();
  });

  it("recovers when the failure hits the creation of a new segment", async () => {
    const disk = fullDisk("write", /events\/0+([2-9]|\d\d+)\.log/);
    const { store } = await openStore(dir, { faults: disk.faults, segmentBytes: 100 });
    await store.putWorker(workerRecord("w1"));
    await store.appendEvents("w1", events(1, 5));
    disk.set(true);
    await expect(store.appendEvents("w1", events(6, 6))).rejects.toBeInstanceOf(StoreWriteError);
    disk.set(false);
    await store.appendEvents("w1", events(6, 10));
    await store.close();
    const reopened = await openStore(dir, { segmentBytes: 100 });
    expect(reopened.opened.diagnostics).toEqual([]);
    expect((await reopened.store.readEvents("w1", 0n, 100)).map((e) => Number(e.seq))).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    await reopened.store.close();
  });

  it("fails snapshot and run writes with StoreWriteError and keeps the previous state", async () => {
    const disk = fullDisk("write", /snapshot|runs/);
    const { store } = await openStore(dir, { faults: disk.faults });
    await store.putWorker(workerRecord("w1", "before"));
    await store.putRun("w1", run("r1", RunStatus.RUNNING), NO_REQUEST);
    disk.set(true);
    await expect(store.putWorker(workerRecord("w1", "after"))).rejects.toBeInstanceOf(StoreWriteError);
    await expect(store.putWorker(workerRecord("w2"))).rejects.toBeInstanceOf(StoreWriteError);
    await expect(store.putRun("w1", run("r1", RunStatus.COMPLETED), NO_REQUEST)).rejects.toBeInstanceOf(StoreWriteError);
    await expect(store.putRun("w1", run("r2", RunStatus.QUEUED), NO_REQUEST)).rejects.toBeInstanceOf(StoreWriteError);
    expect((await store.getRun("w1", "r1"))?.status).toBe(RunStatus.RUNNING);
    expect(await store.getRun("w1", "r2")).toBeUndefined();
    disk.set(false);
    await store.putRun("w1", run("r2", RunStatus.QUEUED), NO_REQUEST);
    expect((await store.listRuns("w1", undefined, 10)).map((r) => [r.ordinal, r.run.runId])).toEqual([
      [2, "r2"],
      [1, "r1"],
    ]);
    await store.close();

    const reopened = await openStore(dir);
    expect(reopened.opened.diagnostics).toEqual([]);
    expect(reopened.opened.workers.map((w) => w.record.worker.displayName)).toEqual(["before"]);
    expect(reopened.opened.workers[0]?.runCount).toBe(2);
    await reopened.store.close();
  });

  it("keeps a worker whose delete failed whole: readable, writable, there after a reopen, and deletable later", async () => {
    // The rename away is done, its directory's fsync fails: the store used to forget the worker at once
    // (reads "unknown worker") while its directory came back at the next open.
    const disk = fullDisk("sync", /^workers$/);
    const { store } = await openStore(dir, { faults: disk.faults });
    await store.putWorker(workerRecord("w1"));
    await store.appendEvents("w1", events(1, 2));
    disk.set(true);
    await expect(store.deleteWorker("w1")).rejects.toBeInstanceOf(StoreWriteError);
    disk.set(false);
    expect((await store.readEvents("w1", 0n, 10)).map(eventText)).toEqual(["event-1", "event-2"]);
    await store.appendEvents("w1", events(3, 3));
    await store.close();

    const reopened = await openStore(dir);
    expect(reopened.opened.diagnostics).toEqual([]);
    expect(reopened.opened.workers.map((w) => [w.record.worker.ref?.workerId, w.lastEventSeq])).toEqual([["w1", 3n]]);
    await reopened.store.deleteWorker("w1");
    await reopened.store.close();
    expect((await openStore(dir)).opened.workers).toEqual([]);
  });

  it("removes a batch whose fdatasync failed at once, so a restart cannot resurrect it", async () => {
    const disk = fullDisk("sync", /events\/\d+\.log/);
    const { store } = await openStore(dir, { faults: disk.faults });
    await store.putWorker(workerRecord("w1"));
    await store.appendEvents("w1", events(1, 3));
    disk.set(true);
    await expect(store.appendEvents("w1", events(4, 6))).rejects.toBeInstanceOf(StoreWriteError);
    // No further append: the process stops here (closed, or killed).
    await store.close();
    disk.set(false);

    const reopened = await openStore(dir);
    expect(reopened.opened.workers[0]?.lastEventSeq).toBe(3n);
    expect((await reopened.store.readEvents("w1", 0n, 10)).map(eventText)).toEqual(["event-1", "event-2", "event-3"]);
    await reopened.store.close();
  });
});
