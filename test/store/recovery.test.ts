import { readFile, stat, truncate, unlink, writeFile, appendFile } from "node:fs/promises";
import * as path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { DiagnosticSeverity } from "../../gen/worker_runtime/v1/runtime_pb.js";
import { WorkerStatus } from "../../gen/worker_runtime/v1/worker_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { StoreWriteError } from "../../src/runtime/store.js";
import { StoreCorruptionError } from "../../src/store/fs/index.js";
import { entries, entryText, events, eventText, NO_REQUEST, openStore, run, tempDataDir, workerRecord } from "./fs-support.js";

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => ({ dir, cleanup } = await tempDataDir()));
afterEach(async () => cleanup());

const firstSegment = (workerId: string, log: string) => path.join("workers", workerId, log, "00000000000000000001.log");

/** Two workers with 10 transcript entries and 10 events each, closed. */
async function seed(options = {}): Promise<void> {
  const { store } = await openStore(dir, options);
  for (const id of ["w1", "w2"]) {
    await store.putWorker(workerRecord(id));
    for (let i = 1; i <= 10; i++) {
      await store.appendTranscript(id, entries(i, i));
      await store.appendEvents(id, events(i, i));
    }
  }
  await store.close();
}

async function flipByte(rel: string, at: (size: number) => number): Promise<void> {
  const file = path.join(dir, rel);
  const bytes = await readFile(file);
  const pos = at(bytes.length);
  bytes[pos] = (bytes[pos] ?? 0) ^ 0x5a;
  await writeFile(file, bytes);
}

describe("file store recovery", () => {
  it("truncates a torn tail (record cut mid-way) with a warning and keeps appending", async () => {
    await seed();
    const rel = firstSegment("w1", "transcript");
    const { size } = await stat(path.join(dir, rel));
    await truncate(path.join(dir, rel), size - 7);

    const { store, opened } = await openStore(dir);
    const w1 = opened.workers.find((w) => w.record.worker.ref?.workerId === "w1")!;
    expect(w1.quarantined).toBeUndefined();
    expect(w1.lastTranscriptSeq).toBe(9n);
    expect(opened.diagnostics).toHaveLength(1);
    expect(opened.diagnostics[0]).toMatchObject({
      severity: DiagnosticSeverity.WARNING,
      code: "store.torn_tail_truncated",
      workerId: "w1",
    });
    expect(opened.diagnostics[0]!.message).toContain(rel);
    expect(opened.diagnostics[0]!.message).not.toContain(dir);
    // What was dropped is counted from the torn file's size (the scan's fstat, not a separate stat).
    const kept = (await stat(path.join(dir, rel))).size;
    expect(kept).toBeLessThan(size - 7);
    expect(opened.diagnostics[0]!.message).toContain(`; ${size - 7 - kept} bytes dropped`);
    await store.appendTranscript(
      "w1",
      entries(10, 10, () => "rewritten"),
    );
    await store.close();

    const again = await openStore(dir);
    expect(again.opened.diagnostics).toEqual([]);
    const tail = await again.store.readTranscript("w1", { kind: "before", beforeSeq: 11n }, 2);
    expect(tail.map(entryText)).toEqual(["message 9", "rewritten"]);
    await again.store.close();
  });

  it("truncates zero-filled garbage after the last record", async () => {
    await seed();
    await appendFile(path.join(dir, firstSegment("w2", "events")), Buffer.alloc(4096));
    const { store, opened } = await openStore(dir);
    expect(opened.diagnostics.map((d) => d.code)).toEqual(["store.torn_tail_truncated"]);
    expect(opened.workers.find((w) => w.record.worker.ref?.workerId === "w2")?.lastEventSeq).toBe(10n);
    await store.appendEvents("w2", events(11, 11));
    await store.close();
  });

  it("quarantines a worker whose log is corrupt in the middle and serves the others", async () => {
    await seed();
    const rel = firstSegment("w1", "events");
    await flipByte(rel, (size) => Math.floor(size / 2));

    const { store, opened } = await openStore(dir);
    const [w1, w2] = opened.workers;
    expect(w1?.quarantined).toMatch(/events.*00000000000000000001\.log/);
    expect(w2?.quarantined).toBeUndefined();
    // The damage is in its events: its transcript reads whole, so nothing says it is cut.
    expect(w1?.transcriptCut).toBeUndefined();
    const errors = opened.diagnostics.filter((d) => d.severity === DiagnosticSeverity.ERROR);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ code: "store.worker_quarantined", workerId: "w1" });
    expect(errors[0]!.message).toContain(rel);
    expect(errors[0]!.message).not.toContain(dir);
    // The damaged file is left as it was for an operator to inspect.
    expect((await stat(path.join(dir, rel))).size).toBeGreaterThan(0);
    // Records before the damage stay readable; the damaged log takes no appends.
    expect((await store.readEvents("w1", 0n, 2)).map(eventText)).toEqual(["event-1", "event-2"]);
    await expect(store.appendEvents("w1", events(11, 11))).rejects.toThrow(/damaged/);
    // The healthy worker is fully served.
    await store.appendEvents("w2", events(11, 11));
    expect((await store.readEvents("w2", 9n, 5)).map(eventText)).toEqual(["event-10", "event-11"]);
    await store.close();
  });

  it("quarantines a worker whose snapshot is missing", async () => {
    await seed();
    await unlink(path.join(dir, "workers", "w2", "worker.snapshot"));
    const { store, opened } = await openStore(dir);
    const w2 = opened.workers.find((w) => w.record.worker.ref?.workerId === "w2")!;
    expect(w2.quarantined).toMatch(/worker\.snapshot: snapshot is missing/);
    expect(w2.record.worker.status).toBe(WorkerStatus.FAILED);
    expect(w2.lastTranscriptSeq).toBe(10n);
    expect(opened.workers.find((w) => w.record.worker.ref?.workerId === "w1")?.quarantined).toBeUndefined();
    expect(opened.diagnostics).toEqual([
      expect.objectContaining({ severity: DiagnosticSeverity.ERROR, code: "store.worker_quarantined", workerId: "w2" }),
    ]);
    await store.close();
  });

  it("quarantines a worker whose snapshot is garbage", async () => {
    await seed();
    await writeFile(path.join(dir, "workers", "w1", "worker.snapshot"), "not a snapshot at all, just text");
    const { store, opened } = await openStore(dir);
    const w1 = opened.workers.find((w) => w.record.worker.ref?.workerId === "w1")!;
    expect(w1.quarantined).toMatch(/workers\/w1\/worker\.snapshot: bad record marker/);
    expect(opened.diagnostics.map((d) => d.workerId)).toEqual(["w1"]);
    await store.close();
  });

  it("quarantines a worker whose snapshot is larger than any snapshot can be, without reading it", async () => {
    await seed();
    // Sparse: 80 MiB on paper, past the one-frame bound (64 MiB body), nothing on disk.
    await truncate(path.join(dir, "workers", "w1", "worker.snapshot"), 80 * 1024 * 1024);
    const { store, opened } = await openStore(dir);
    const w1 = opened.workers.find((w) => w.record.worker.ref?.workerId === "w1")!;
    expect(w1.quarantined).toMatch(/workers\/w1\/worker\.snapshot: the file is 83886080 bytes, larger than any snapshot \(67108884\)/);
    expect(opened.diagnostics.map((d) => d.workerId)).toEqual(["w1"]);
    await store.close();
  });

  it("refuses to open with a runtime snapshot larger than any snapshot can be", async () => {
    await seed();
    await truncate(path.join(dir, "runtime.snapshot"), 80 * 1024 * 1024);
    await expect(openStore(dir)).rejects.toThrow(
      /runtime\.snapshot in the data dir is damaged \(the file is 83886080 bytes, larger than any snapshot/,
    );
  });

  it("refuses to open with a garbage runtime snapshot, naming the file and what to do", async () => {
    await seed();
    await flipByte("runtime.snapshot", (size) => size - 3);
    const attempt = openStore(dir);
    await expect(attempt).rejects.toThrow(/runtime\.snapshot in the data dir is damaged \(checksum mismatch\)/);
    await expect(attempt).rejects.toThrow(/Restore runtime\.snapshot from a backup/);
  });

  it("refuses to open a data dir with workers but no runtime snapshot", async () => {
    await seed();
    await unlink(path.join(dir, "runtime.snapshot"));
    await expect(openStore(dir)).rejects.toThrow(/runtime\.snapshot is missing/);
  });

  it("detects damage in a sealed segment when reading it", async () => {
    const { store } = await openStore(dir, { segmentBytes: 200 });
    await store.putWorker(workerRecord("w1"));
    for (let i = 1; i <= 40; i++) await store.appendTranscript("w1", entries(i, i));
    await store.close();
    await flipByte(firstSegment("w1", "transcript"), () => 30);

    const reopened = await openStore(dir, { segmentBytes: 200 });
    expect(reopened.opened.workers[0]?.lastTranscriptSeq).toBe(40n);
    await expect(reopened.store.readTranscript("w1", { kind: "after", afterSeq: 0n }, 5)).rejects.toBeInstanceOf(StoreCorruptionError);
    const tail = await reopened.store.readTranscript("w1", { kind: "before", beforeSeq: 41n }, 3);
    expect(tail.map((e) => e.seq)).toEqual([38n, 39n, 40n]);
    await reopened.store.close();
  });

  it("reports damage a read finds after open and stops building on the damaged worker", async () => {
    const { store } = await openStore(dir, { segmentBytes: 200 });
    for (const id of ["w1", "w2"]) {
      await store.putWorker(workerRecord(id));
      for (let i = 1; i <= 40; i++) await store.appendTranscript(id, entries(i, i));
    }
    await store.close();
    await flipByte(firstSegment("w1", "transcript"), () => 30);

    const reports: Array<[string | undefined, string]> = [];
    const options = { segmentBytes: 200, onCorruption: (id: string | undefined, message: string) => reports.push([id, message]) };
    const reopened = await openStore(dir, options);
    expect(reports).toEqual([]);
    const read = reopened.store.readTranscript("w1", { kind: "after", afterSeq: 0n }, 5);
    await expect(read).rejects.toBeInstanceOf(StoreCorruptionError);
    expect(reports).toHaveLength(1);
    expect(reports[0]![0]).toBe("w1");
    expect(reports[0]![1]).toContain(firstSegment("w1", "transcript"));
    expect(reports[0]![1]).not.toContain(dir);

    // Nothing more is appended to any log of the damaged worker...
    await expect(reopened.store.appendTranscript("w1", entries(41, 41))).rejects.toBeInstanceOf(StoreWriteError);
    await expect(reopened.store.appendEvents("w1", events(1, 1))).rejects.toBeInstanceOf(StoreWriteError);
    await expect(reopened.store.putRun("w1", run("r1", RunStatus.FAILED), NO_REQUEST)).rejects.toBeInstanceOf(StoreWriteError);
    // ...but its snapshot can still be saved (e.g. as FAILED), and others are untouched.
    await reopened.store.putWorker(workerRecord("w1", "failed"));
    await reopened.store.appendTranscript("w2", entries(41, 41));
    await reopened.store.readTranscript("w1", { kind: "after", afterSeq: 0n }, 5).catch(() => undefined);
    expect(reports).toHaveLength(1);
    await reopened.store.close();
  });

  it("makes the truncation of a torn tail durable", async () => {
    await seed();
    const rel = firstSegment("w1", "transcript");
    const { size } = await stat(path.join(dir, rel));
    await truncate(path.join(dir, rel), size - 7);
    const synced: string[] = [];
    const { store } = await openStore(dir, { faults: { beforeSync: (file) => void synced.push(file) } });
    expect(synced).toContain(rel);
    await store.close();
  });

  it("truncates a torn tail followed by leftover records that do not continue the log", async () => {
    await seed();
    const rel = firstSegment("w1", "events");
    const file = path.join(dir, rel);
    const bytes = await readFile(file);
    // A stale copy of the first record (seq 1) behind a zeroed hole, as
    // reused blocks can leave after a power loss.
    const firstRecord = bytes.subarray(0, 20 + bytes.readUInt32BE(4));
    await appendFile(file, Buffer.concat([Buffer.alloc(512), firstRecord]));

    const { store, opened } = await openStore(dir);
    const w1 = opened.workers.find((w) => w.record.worker.ref?.workerId === "w1")!;
    expect(w1.quarantined).toBeUndefined();
    expect(w1.lastEventSeq).toBe(10n);
    expect(opened.diagnostics.map((d) => [d.code, d.workerId])).toEqual([["store.torn_tail_truncated", "w1"]]);
    expect((await stat(file)).size).toBe(bytes.length);
    await store.appendEvents("w1", events(11, 11));
    await store.close();
  });
});
