import { rm, stat, truncate, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { entries, entryText, events, NO_REQUEST, openStore, run, tempDataDir, workerRecord } from "./fs-support.js";
import { checkpointPath } from "./run-checkpoint-support.js";
import { FRAME_HEADER_BYTES, FRAME_MAGIC } from "../../src/store/fs/record-frame.js";
import { MAX_CHECKPOINT_FRAME_BYTES } from "../../src/store/fs/run-index-checkpoint.js";
import { SCAN_CHUNK_BYTES } from "../../src/store/fs/segment-scan.js";

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => ({ dir, cleanup } = await tempDataDir()));
afterEach(async () => cleanup());

const MiB = 1024 * 1024;

/**
 * Open scans each log's active segment record by record. Segments grow to
 * 8 MiB by default and workers are opened 32 at a time, so a scan that
 * read a whole segment at once held up to 256 MiB at start-up: enough to
 * get a runtime killed by its memory limit, again at every restart. The
 * scan reads in bounded chunks instead.
 */
describe("file store open", () => {
  it("scans an active segment in bounded reads, not the whole file at once", async () => {
    const { store } = await openStore(dir);
    await store.putWorker(workerRecord("w1"));
    const text = "x".repeat(60 * 1024);
    for (let seq = 1; seq <= 64; seq += 8) {
      await store.appendTranscript(
        "w1",
        entries(seq, seq + 7, () => text),
      );
      await store.appendEvents("w1", events(seq, seq + 7));
    }
    await store.close();

    const reopened = await openStore(dir);
    expect(reopened.opened.workers[0]?.lastTranscriptSeq).toBe(64n);
    expect(reopened.store.stats.bytesRead, "the whole 3.75 MiB segment was scanned").toBeGreaterThan(3.5 * MiB);
    expect(reopened.store.stats.largestReadBytes).toBeLessThanOrEqual(MiB / 2);
    const tail = await reopened.store.readTranscript("w1", { kind: "before", beforeSeq: 65n }, 2);
    expect(tail.map((e) => e.seq)).toEqual([63n, 64n]);
    await reopened.store.close();
  });

  it("scans records longer than a chunk (the first one too) and across chunk ends, and still truncates a torn tail", async () => {
    const { store } = await openStore(dir);
    await store.putWorker(workerRecord("w1"));
    await store.appendTranscript(
      "w1",
      entries(1, 1, () => "F".repeat(300 * 1024)),
    );
    await store.appendTranscript(
      "w1",
      entries(2, 10, (seq) => `${seq}`.repeat(100 * 1024)),
    );
    await store.appendTranscript(
      "w1",
      entries(11, 11, () => "L".repeat(700 * 1024)),
    );
    await store.appendTranscript("w1", entries(12, 12));
    await store.close();
    const segment = path.join(dir, "workers", "w1", "transcript", "00000000000000000001.log");
    await truncate(segment, (await stat(segment)).size - 7);

    const reopened = await openStore(dir);
    expect(reopened.opened.workers[0]?.lastTranscriptSeq).toBe(11n);
    expect(reopened.opened.diagnostics.map((d) => d.code)).toEqual(["store.torn_tail_truncated"]);
    expect(reopened.store.stats.largestReadBytes).toBeLessThan(MiB);
    const all = await reopened.store.readTranscript("w1", { kind: "after", afterSeq: 0n }, 20);
    expect(all.map((e) => e.seq)).toEqual(Array.from({ length: 11 }, (_, i) => BigInt(i + 1)));
    expect(all.map((e) => entryText(e).length)).toEqual([
      300 * 1024,
      ...Array.from({ length: 8 }, () => 100 * 1024),
      200 * 1024,
      700 * 1024,
    ]);
    await reopened.store.appendTranscript("w1", entries(12, 12));
    await reopened.store.close();
  });

  it("rebuilds the run index in bounded reads when runs carry large inputs", async () => {
    const { store } = await openStore(dir);
    await store.putWorker(workerRecord("w1"));
    // 30 runs with 256 KiB inputs (the default input limit), two versions each: 15 MiB of run log.
    for (let i = 1; i <= 30; i++) {
      const input = `${i % 10}`.repeat(256 * 1024);
      await store.putRun("w1", run(`r${i}`, RunStatus.RUNNING, "", input), NO_REQUEST);
      await store.putRun("w1", run(`r${i}`, RunStatus.COMPLETED, "", input), NO_REQUEST);
    }
    await store.close();
    // Without its checkpoint (a data dir from before checkpoints, or one that
    // cannot be trusted) open rebuilds the index from every record.
    await rm(checkpointPath(dir, "w1"));

    const reopened = await openStore(dir);
    expect(reopened.opened.workers[0]?.runCount).toBe(30);
    expect(reopened.store.stats.bytesRead, "the whole run log was read").toBeGreaterThan(15 * MiB);
    expect(reopened.store.stats.largestReadBytes).toBeLessThanOrEqual(2 * MiB);
    const newest = await reopened.store.listRuns("w1", undefined, 2);
    expect(newest.map((r) => [r.ordinal, r.run.runId, r.run.status])).toEqual([
      [30, "r30", RunStatus.COMPLETED],
      [29, "r29", RunStatus.COMPLETED],
    ]);
    await reopened.store.close();
  });

  /**
   * The run index checkpoint grows with a worker's run history (about 20 B a
   * run with short ids; megabytes for a long-lived companion), and open read
   * it whole, 32 workers at a time, on top of the index it builds. It is now
   * read a frame at a time, so no read holds more than one frame (64 KiB of
   * entries by default) whatever the file's size.
   */
  it("reads the run index checkpoint a frame at a time, not the whole file", async () => {
    // Small segments: open scans only the active one, so the records it reads are the tail after the checkpoint.
    const options = { segmentBytes: 64 * 1024 };
    const { store } = await openStore(dir, options);
    await store.putWorker(workerRecord("w1"));
    // 2,200 runs with 1,000-character ids: a checkpoint of over 2 MiB.
    const id = (n: number) => `r${n}-`.padEnd(1000, "i");
    for (let n = 1; n <= 2_200; n += 100) {
      const batch = Array.from({ length: 100 }, (_, i) => n + i);
      await Promise.all(batch.map((m) => store.putRun("w1", run(id(m), RunStatus.COMPLETED, "", "x"), NO_REQUEST)));
    }
    await store.close();
    const checkpointBytes = (await stat(checkpointPath(dir, "w1"))).size;
    expect(checkpointBytes).toBeGreaterThan(2 * MiB);

    const reopened = await openStore(dir, options);
    try {
      expect(reopened.opened.diagnostics).toEqual([]);
      expect(reopened.opened.workers[0]?.runCount).toBe(2_200);
      expect(reopened.store.stats.recordsRead, "the checkpoint was used, not the whole run log").toBeLessThan(200);
      expect(reopened.store.stats.bytesRead, "the whole checkpoint was read").toBeGreaterThan(checkpointBytes);
      expect(reopened.store.stats.largestReadBytes).toBeLessThanOrEqual(SCAN_CHUNK_BYTES);
      const newest = await reopened.store.listRuns("w1", undefined, 2);
      expect(newest.map((r) => [r.ordinal, r.run.runId])).toEqual([
        [2_200, id(2_200)],
        [2_199, id(2_199)],
      ]);
      expect((await reopened.store.getRun("w1", id(1)))?.runId).toBe(id(1));
    } finally {
      await reopened.store.close();
    }
  });

  it("refuses a checkpoint frame over the reader's bound without reading it, and rebuilds the index instead", async () => {
    const { store } = await openStore(dir);
    await store.putWorker(workerRecord("w1"));
    await store.putRun("w1", run("r1", RunStatus.COMPLETED), NO_REQUEST);
    await store.close();
    // A frame header that claims 60 MiB (a flipped length, or another writer's): sizing a read by it would allocate 60 MiB.
    const header = Buffer.alloc(FRAME_HEADER_BYTES);
    header.writeUInt32BE(FRAME_MAGIC, 0);
    header.writeUInt32BE(60 * MiB, 4);
    await writeFile(checkpointPath(dir, "w1"), header);

    const reopened = await openStore(dir);
    try {
      expect(reopened.opened.diagnostics.map((d) => d.code)).toEqual(["store.run_index_rebuilt"]);
      expect(reopened.opened.diagnostics[0]?.message).toContain(`over the ${MAX_CHECKPOINT_FRAME_BYTES}-byte bound`);
      expect(reopened.store.stats.largestReadBytes).toBeLessThanOrEqual(SCAN_CHUNK_BYTES);
      expect(reopened.opened.workers[0]?.runCount).toBe(1);
    } finally {
      await reopened.store.close();
    }
  });
});
