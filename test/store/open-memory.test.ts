import { rm, stat, truncate } from "node:fs/promises";
import * as path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { entries, entryText, events, NO_REQUEST, openStore, run, tempDataDir, workerRecord } from "./fs-support.js";
import { checkpointPath } from "./run-checkpoint-support.js";

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
});
