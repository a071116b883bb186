import { readFile, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { inputFingerprint } from "../../src/runtime/fingerprint.js";
import { StoreConflictError, StoreSequenceError } from "../../src/runtime/store.js";
import { tableCrc32, crc32 } from "../../src/store/fs/crc32.js";
import { RUNTIME_SNAPSHOT } from "../../src/store/fs/layout.js";
import { encodeSnapshot } from "../../src/store/fs/snapshot-file.js";
import { entries, entryText, events, eventText, openStore, run, tempDataDir, workerRecord, NO_REQUEST } from "./fs-support.js";

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => ({ dir, cleanup } = await tempDataDir()));
afterEach(async () => cleanup());

describe("file store round trips", () => {
  it("crc32 matches the IEEE check value in both implementations", () => {
    const check = Buffer.from("123456789");
    expect(crc32(check)).toBe(0xcbf43926);
    expect(tableCrc32(check)).toBe(0xcbf43926);
  });

  it("persists the runtime id on first open and refuses a conflicting one", async () => {
    const first = await openStore(dir);
    expect(first.opened.runtimeId).toBe("rt-generated");
    await first.store.close();

    const again = await openStore(dir, {}, "rt-generated");
    expect(again.opened.runtimeId).toBe("rt-generated");
    await again.store.close();

    const conflicting = openStore(dir, {}, "rt-other");
    await expect(conflicting).rejects.toBeInstanceOf(StoreConflictError);
    await expect(conflicting).rejects.toThrow(/belongs to runtime "rt-generated".*"rt-other"/);
  });

  it("persists a random store id with a new data dir; a data dir written before it opens with none", async () => {
    const first = await openStore(dir);
    expect(first.opened.storeId).toMatch(/^[0-9a-f]{32}$/);
    await first.store.close();
    const again = await openStore(dir);
    expect(again.opened.storeId).toBe(first.opened.storeId);
    await again.store.close();

    // runtime.snapshot as earlier versions wrote it: the runtime id only. Not rewritten at open.
    const snapshotFile = path.join(dir, RUNTIME_SNAPSHOT);
    await writeFile(snapshotFile, encodeSnapshot(Buffer.from(JSON.stringify({ runtimeId: "rt-generated" }))));
    const before = await readFile(snapshotFile);
    const legacy = await openStore(dir);
    expect(legacy.opened.runtimeId).toBe("rt-generated");
    expect(legacy.opened.storeId).toBe("");
    await legacy.store.close();
    expect(await readFile(snapshotFile)).toEqual(before);

    const other = await tempDataDir();
    try {
      const fresh = await openStore(other.dir);
      expect(fresh.opened.storeId).not.toBe(first.opened.storeId);
      await fresh.store.close();
    } finally {
      await other.cleanup();
    }
  });

  it("appends and reads transcript, events and runtime events in order", async () => {
    const { store } = await openStore(dir);
    await store.putWorker(workerRecord("w1"));
    await Promise.all([
      store.appendTranscript("w1", entries(1, 3)),
      store.appendTranscript("w1", entries(4, 10)),
      store.appendEvents("w1", events(1, 5)),
      store.appendEvents("w1", events(6, 6)),
      store.appendRuntimeEvents(events(1, 4)),
    ]);
    const after = await store.readTranscript("w1", { kind: "after", afterSeq: 2n }, 3);
    expect(after.map((e) => e.seq)).toEqual([3n, 4n, 5n]);
    expect(entryText(after[0]!)).toBe("message 3");
    const before = await store.readTranscript("w1", { kind: "before", beforeSeq: 11n }, 4);
    expect(before.map((e) => e.seq)).toEqual([7n, 8n, 9n, 10n]);
    const head = await store.readTranscript("w1", { kind: "before", beforeSeq: 3n }, 10);
    expect(head.map((e) => e.seq)).toEqual([1n, 2n]);
    expect((await store.readEvents("w1", 4n, 100)).map(eventText)).toEqual(["event-5", "event-6"]);
    expect((await store.readRuntimeEvents(0n, 2)).map(eventText)).toEqual(["event-1", "event-2"]);
    expect(store.earliestEventSeq("w1")).toBe(1n);
    expect(store.earliestRuntimeEventSeq()).toBe(1n);
    await store.close();
  });

  it("refuses appends that do not continue the sequence, and keeps the log usable", async () => {
    const { store } = await openStore(dir);
    await store.putWorker(workerRecord("w1"));
    await store.appendEvents("w1", events(1, 2));
    await expect(store.appendEvents("w1", events(4, 4))).rejects.toBeInstanceOf(StoreSequenceError);
    await expect(store.appendEvents("w1", events(2, 2))).rejects.toBeInstanceOf(StoreSequenceError);
    await expect(store.appendTranscript("w1", entries(2, 2))).rejects.toBeInstanceOf(StoreSequenceError);
    await expect(store.appendRuntimeEvents([events(1, 3)[0]!, events(3, 3)[0]!])).rejects.toBeInstanceOf(StoreSequenceError);
    await store.appendEvents("w1", events(3, 3));
    expect((await store.readEvents("w1", 0n, 10)).map((e) => e.seq)).toEqual([1n, 2n, 3n]);
    await store.close();
  });

  it("group-commits concurrent appends into fewer fsyncs than appends", async () => {
    const { store } = await openStore(dir);
    await store.putWorker(workerRecord("w1"));
    const syncsBefore = store.stats.logSyncs;
    await Promise.all(Array.from({ length: 200 }, (_, i) => store.appendEvents("w1", events(i + 1, i + 1))));
    const syncs = store.stats.logSyncs - syncsBefore;
    expect(syncs).toBeGreaterThanOrEqual(1);
    expect(syncs).toBeLessThan(200);
    expect((await store.readEvents("w1", 0n, 1000)).length).toBe(200);
    await store.close();
  });

  it("keeps runs latest-wins, lists them newest first and pages by ordinal", async () => {
    const { store } = await openStore(dir);
    await store.putWorker(workerRecord("w1"));
    for (let i = 1; i <= 5; i++) await store.putRun("w1", run(`r${i}`, RunStatus.QUEUED), NO_REQUEST);
    await store.putRun("w1", run("r2", RunStatus.COMPLETED), NO_REQUEST);
    expect((await store.getRun("w1", "r2"))?.status).toBe(RunStatus.COMPLETED);
    expect(await store.getRun("w1", "missing")).toBeUndefined();
    const page = await store.listRuns("w1", undefined, 2);
    expect(page.map((r) => [r.ordinal, r.run.runId])).toEqual([
      [5, "r5"],
      [4, "r4"],
    ]);
    const next = await store.listRuns("w1", 4, 10);
    expect(next.map((r) => [r.ordinal, r.run.runId, r.run.status])).toEqual([
      [3, "r3", RunStatus.QUEUED],
      [2, "r2", RunStatus.COMPLETED],
      [1, "r1", RunStatus.QUEUED],
    ]);
    await store.close();
  });

  it("restart keeps workers in creation order, transcripts, events, runs and request ids", async () => {
    const first = await openStore(dir);
    const s = first.store;
    for (const id of ["zeta", "alpha", "weird/id ü"]) await s.putWorker(workerRecord(id));
    const renamed = workerRecord("alpha", "Alpha renamed");
    await s.putWorker(renamed);
    await s.appendTranscript("alpha", entries(1, 20));
    await s.appendEvents("alpha", events(1, 30));
    await s.appendRuntimeEvents(events(1, 7));
    await s.putRun("alpha", run("r1", RunStatus.COMPLETED, "req-a", "hello"), {
      fingerprint: inputFingerprint("hello"),
    });
    await s.putRun("alpha", run("r2", RunStatus.RUNNING, "req-b", "again"), {
      fingerprint: inputFingerprint("again"),
    });
    await s.putRun("alpha", run("r3", RunStatus.QUEUED), NO_REQUEST);
    await s.putRun("alpha", run("r4", RunStatus.AWAITING_APPROVAL), NO_REQUEST);
    await s.close();

    const { store, opened } = await openStore(dir);
    expect(opened.runtimeId).toBe("rt-generated");
    expect(opened.diagnostics).toEqual([]);
    expect(opened.lastRuntimeEventSeq).toBe(7n);
    expect(opened.workers.map((w) => w.record.worker.ref?.workerId)).toEqual(["zeta", "alpha", "weird/id ü"]);
    const alpha = opened.workers[1]!;
    expect(alpha.quarantined).toBeUndefined();
    expect(alpha.record.worker.displayName).toBe("Alpha renamed");
    expect(alpha.record.createRequestId).toBe("req-alpha");
    expect(alpha.lastTranscriptSeq).toBe(20n);
    expect(alpha.lastEventSeq).toBe(30n);
    expect(alpha.runCount).toBe(4);
    expect(alpha.unfinishedRuns.map((r) => r.runId).sort()).toEqual(["r2", "r3", "r4"]);
    expect(alpha.recentRequestIds).toEqual([
      { requestId: "req-a", runId: "r1", fingerprint: inputFingerprint("hello") },
      { requestId: "req-b", runId: "r2", fingerprint: inputFingerprint("again") },
    ]);
    expect(entryText((await store.readTranscript("alpha", { kind: "after", afterSeq: 19n }, 5))[0]!)).toBe("message 20");
    await store.appendEvents("alpha", events(31, 31));
    await store.putRun("alpha", run("r5", RunStatus.QUEUED), NO_REQUEST);
    expect((await store.listRuns("alpha", undefined, 1))[0]).toMatchObject({ ordinal: 5 });
    await store.close();
  });

  it("deletes a worker with all of its logs", async () => {
    const first = await openStore(dir);
    await first.store.putWorker(workerRecord("gone"));
    await first.store.putWorker(workerRecord("kept"));
    await first.store.appendEvents("gone", events(1, 3));
    await first.store.deleteWorker("gone");
    expect(() => first.store.earliestEventSeq("gone")).toThrow(/unknown worker/);
    await first.store.close();
    const { opened, store } = await openStore(dir);
    expect(opened.workers.map((w) => w.record.worker.ref?.workerId)).toEqual(["kept"]);
    await store.putWorker(workerRecord("gone"));
    expect(await store.readEvents("gone", 0n, 10)).toEqual([]);
    await store.close();
  });

  it("rolls logs into segments and reads across segment boundaries", async () => {
    const { store } = await openStore(dir, { segmentBytes: 256 });
    await store.putWorker(workerRecord("w1"));
    for (let i = 1; i <= 100; i += 5) await store.appendTranscript("w1", entries(i, i + 4));
    await store.close();
    const reopened = await openStore(dir, { segmentBytes: 256 });
    const all = await reopened.store.readTranscript("w1", { kind: "after", afterSeq: 0n }, 1000);
    expect(all.map((e) => Number(e.seq))).toEqual(Array.from({ length: 100 }, (_, i) => i + 1));
    const tail = await reopened.store.readTranscript("w1", { kind: "before", beforeSeq: 101n }, 33);
    expect(tail.map((e) => Number(e.seq))).toEqual(Array.from({ length: 33 }, (_, i) => i + 68));
    await reopened.store.close();
  });

  it("makes a newly created data dir durable in its parents", async () => {
    const synced: string[] = [];
    const faults = { beforeSync: (file: string) => void synced.push(file) };
    const { store } = await openStore(path.join(dir, "a", "data"), { faults });
    expect(synced).toContain("..");
    expect(synced).toContain(path.join("..", ".."));
    await store.close();
  });
});
