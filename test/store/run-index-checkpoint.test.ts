import { copyFile, cp, readdir, readFile, rm, stat, truncate, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import type { RunIndexState } from "../../src/store/fs/run-index.js";
import { crc32 } from "../../src/store/fs/crc32.js";
import { encodeRunIndexCheckpoint } from "../../src/store/fs/run-index-checkpoint.js";
import { encodeRunRecord } from "../../src/store/fs/run-record.js";
import { RUN_CHECKPOINT } from "../../src/store/fs/run-log.js";
import { NO_REQUEST, openStore, run, tempDataDir, workerRecord } from "./fs-support.js";
import { checkpointPath, copyDataDir, fullScanView, openedView, readRuns, runLogBytes, writeRuns } from "./run-checkpoint-support.js";

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => ({ dir, cleanup } = await tempDataDir()));
afterEach(async () => cleanup());

const KiB = 1024;
/**
 * Small segments, so that most of a run log is in sealed segments: open
 * scans the active segment in any case (recovery), sealed ones only when it
 * rebuilds the run index from the whole log.
 */
const SMALL = { segmentBytes: 16 * KiB };

/** The parts of two opens' views that must be equal (what they read differs on purpose). */
function answers(view: Awaited<ReturnType<typeof openedView>>) {
  const { restored, listed, got } = view;
  return { restored, listed, got };
}

/**
 * The run log's index (run id → ordinal → latest version) was rebuilt at
 * every open by reading every version of every run, inputs included, so a
 * long-lived worker's restart read its whole run history. A checkpoint of
 * the index, written atomically every so many records and at close, lets
 * open read it plus only the records after it; anything wrong with it falls
 * back to the full scan, never to a wrong answer.
 */
describe("run index checkpoint", () => {
  it("lets open read the checkpoint and the records after it, not the whole run log", async () => {
    const { store } = await openStore(dir, { segmentBytes: 64 * KiB });
    await store.putWorker(workerRecord("w1"));
    // 1,500 runs, two versions each with 1 KiB inputs: about 3.4 MiB of run log in 50 segments.
    await writeRuns(store, "w1", 1, 1_500, KiB, 100);
    const before = await readRuns(store, "w1");
    await store.close();
    const logBytes = await runLogBytes(dir, "w1");

    const view = await openedView(dir, "w1");
    const full = await fullScanView(dir, "w1");
    expect(full.recordsRead, "the full scan reads every run record").toBeGreaterThanOrEqual(3_000);
    expect(full.bytesRead).toBeGreaterThan(logBytes);
    // What open reads now: the worker snapshot, the active segment's recovery
    // scan (64 KiB here), the checkpoint (about 40 bytes a run) and the
    // record it ends at.
    expect(view.recordsRead, "records read at open").toBeLessThan(120);
    expect(view.bytesRead, "bytes read at open").toBeLessThan(logBytes / 10);
    expect(view.diagnostics).toEqual([]);
    expect(answers(view)).toEqual(answers(full));
    expect({ listed: view.listed, got: view.got }).toEqual(before);
    expect(view.restored.runCount).toBe(1_500);
  });

  it("restores the same runs, unfinished runs and request ids as the full scan when runs changed after it", async () => {
    const first = await openStore(dir, SMALL);
    await first.store.putWorker(workerRecord("w1"));
    await first.store.putRun("w1", run("early-wait", RunStatus.AWAITING_APPROVAL, "req-wait", "wait"), { fingerprint: "fp-wait" });
    await first.store.putRun("w1", run("early-queued", RunStatus.QUEUED, "", "queued"), NO_REQUEST);
    await writeRuns(first.store, "w1", 1, 300);
    await first.store.close();
    const checkpoint = await readFile(checkpointPath(dir, "w1"));

    // After the checkpoint: an old run ends, an old request id is remembered
    // again (a run rewritten, as a restart interrupting it does), new runs
    // come, one of them left RUNNING. Too few records for a new checkpoint.
    const second = await openStore(dir, SMALL);
    await second.store.putRun("w1", run("early-wait", RunStatus.COMPLETED, "req-wait", "wait"), { fingerprint: "fp-wait" });
    await second.store.putRun("w1", run("r3", RunStatus.INTERRUPTED, "req-3", "3:".padEnd(200, "x")), { fingerprint: "fp-3" });
    await writeRuns(second.store, "w1", 301, 10);
    await second.store.putRun("w1", run("late-running", RunStatus.RUNNING, "req-late", "late"), { fingerprint: "fp-late" });
    const before = await readRuns(second.store, "w1");
    await second.store.close();
    expect(await readFile(checkpointPath(dir, "w1")), "the second session's short tail did not replace the checkpoint").toEqual(checkpoint);

    const view = await openedView(dir, "w1");
    const full = await fullScanView(dir, "w1");
    expect(view.diagnostics).toEqual([]);
    expect(view.recordsRead, "open read the tail, not the log").toBeLessThan(full.recordsRead / 10);
    expect(answers(view)).toEqual(answers(full));
    expect({ listed: view.listed, got: view.got }).toEqual(before);
    expect(view.restored.runCount).toBe(313);
    expect(view.restored.unfinished).toEqual([
      ["early-queued", RunStatus.QUEUED, "queued"],
      ["late-running", RunStatus.RUNNING, "late"],
    ]);
    expect(view.restored.requests?.slice(-6).map((r) => r.requestId)).toEqual([
      "req-wait",
      "req-3",
      "req-303",
      "req-306",
      "req-309",
      "req-late",
    ]);
    expect(view.restored.requests?.at(-1)).toEqual({ requestId: "req-late", runId: "late-running", fingerprint: "fp-late" });
  });

  it("is written every so many run records, not only at close", async () => {
    const { store } = await openStore(dir, SMALL);
    await store.putWorker(workerRecord("w1"));
    await writeRuns(store, "w1", 1, RUN_CHECKPOINT.everyRecords);
    await expect
      .poll(
        () =>
          stat(checkpointPath(dir, "w1")).then(
            () => true,
            () => false,
          ),
        { timeout: 30_000 },
      )
      .toBe(true);
    // A crash image taken now (no close) opens from that checkpoint.
    const image = `${dir}-image`;
    await copyDataDir(dir, image);
    await store.close();
    try {
      const view = await openedView(image, "w1");
      const full = await fullScanView(image, "w1");
      expect(full.recordsRead).toBeGreaterThanOrEqual(2 * RUN_CHECKPOINT.everyRecords);
      // At most one interval of records past the checkpoint, plus the active segment's recovery scan.
      expect(view.recordsRead).toBeLessThanOrEqual(RUN_CHECKPOINT.everyRecords + 100);
      expect(answers(view)).toEqual(answers(full));
    } finally {
      await rm(image, { recursive: true, force: true });
    }
  });

  describe("falls back to the full scan, with a warning, when it cannot be trusted", () => {
    const damages: Array<[string, (file: string) => Promise<void>]> = [
      [
        "corrupt",
        async (file) => {
          const bytes = await readFile(file);
          bytes[Math.floor(bytes.length / 2)] ^= 0xff;
          await writeFile(file, bytes);
        },
      ],
      ["torn", async (file) => truncate(file, Math.floor((await stat(file)).size / 2))],
      ["empty", async (file) => truncate(file, 0)],
      [
        "of another worker's log",
        async (file) => {
          // w2 has as many records as w1, so the record the checkpoint ends at exists in w1 too.
          await copyFile(checkpointPath(dir, "w2"), file);
        },
      ],
    ];
    it.each(damages)("%s", async (_, damage) => {
      const { store } = await openStore(dir, SMALL);
      for (const id of ["w1", "w2"]) {
        await store.putWorker(workerRecord(id));
        await store.putRun(id, run(`${id}-wait`, RunStatus.AWAITING_APPROVAL, `req-${id}`), { fingerprint: "fp" });
        await writeRuns(store, id, id === "w1" ? 1 : 1001, 150);
      }
      await store.close();
      const reference = await fullScanView(dir, "w1");
      const good = await openedView(dir, "w1");
      expect(good.recordsRead).toBeLessThan(reference.recordsRead);
      await damage(checkpointPath(dir, "w1"));

      const view = await openedView(dir, "w1");
      expect(view.diagnostics).toEqual(["store.run_index_rebuilt"]);
      expect(view.recordsRead).toBeGreaterThanOrEqual(reference.recordsRead);
      expect(answers(view)).toEqual(answers(reference));
      // The close after that fallback wrote a good checkpoint again.
      const next = await openedView(dir, "w1");
      expect(next.diagnostics).toEqual([]);
      expect(next.recordsRead).toBe(good.recordsRead);
      expect(answers(next)).toEqual(answers(reference));
    });

    /** A checkpoint of w1's three records, written by hand; `problem` is what open must find wrong with it. */
    const crafted: Array<[string, Partial<RunIndexState>, string | undefined]> = [
      ["consistent (the control: it is used)", {}, undefined],
      ["a run's latest version past its last record", { latest: [1, 400] }, "run 2 has an impossible seq"],
      ["a repeated run id", { runIds: ["r1", "r1"] }, "run 2 has an empty or repeated id"],
      ["an unfinished run that is not a run", { unfinished: [7] }, "unfinished run 7 is not a run"],
      ["a request id of no run", { requests: [{ requestId: "req-x", ordinal: 9, fingerprint: "" }] }, "request id of run 9 is not valid"],
    ];
    it.each(crafted)("well framed: %s", async (_, change, problem) => {
      const { store } = await openStore(dir, SMALL);
      await store.putWorker(workerRecord("w1"));
      await store.putRun("w1", run("w1-wait", RunStatus.AWAITING_APPROVAL, "req-w1"), { fingerprint: "fp" });
      await writeRuns(store, "w1", 1, 1);
      await store.close();
      // Records: w1-wait (1), r1 QUEUED (2), r1 COMPLETED (3), as writeRuns writes them.
      const last = encodeRunRecord(run("r1", RunStatus.COMPLETED, "", "1:".padEnd(200, "x")), "");
      const state: RunIndexState = {
        lastSeq: 3,
        runIds: ["w1-wait", "r1"],
        latest: [1, 3],
        unfinished: [1],
        requests: [{ requestId: "req-w1", ordinal: 1, fingerprint: "fp" }],
        ...change,
      };
      await writeFile(checkpointPath(dir, "w1"), encodeRunIndexCheckpoint({ state, lastCrc: crc32(last) }) ?? Buffer.alloc(0));

      const { store: reopened, opened } = await openStore(dir);
      const messages = opened.diagnostics.map((d) => d.message);
      await reopened.close();
      if (problem === undefined) expect(messages).toEqual([]);
      else expect(messages).toEqual([expect.stringContaining(problem)]);
      const view = await openedView(dir, "w1");
      expect(answers(view)).toEqual(answers(await fullScanView(dir, "w1")));
      expect(view.restored.runCount).toBe(2);
    });

    it("ahead of the log (the log restored from an older copy)", async () => {
      const first = await openStore(dir, SMALL);
      await first.store.putWorker(workerRecord("w1"));
      await writeRuns(first.store, "w1", 1, 100);
      await first.store.close();
      const runsDir = path.dirname(checkpointPath(dir, "w1"));
      const backup = `${dir}-backup`;
      await cp(runsDir, backup, { recursive: true });
      const second = await openStore(dir, SMALL);
      await writeRuns(second.store, "w1", 101, 100);
      await second.store.close();
      for (const name of await readdir(runsDir)) if (/\.(log|idx)$/.test(name)) await rm(path.join(runsDir, name));
      for (const name of await readdir(backup))
        if (/\.(log|idx)$/.test(name)) await copyFile(path.join(backup, name), path.join(runsDir, name));
      await rm(backup, { recursive: true, force: true });

      const view = await openedView(dir, "w1");
      expect(view.diagnostics).toEqual(["store.run_index_rebuilt"]);
      expect(view.restored.runCount).toBe(100);
      expect(answers(view)).toEqual(answers(await fullScanView(dir, "w1")));
    });
  });

  it("ignores and removes a temp checkpoint that a crash left before its rename", async () => {
    const { store } = await openStore(dir, SMALL);
    await store.putWorker(workerRecord("w1"));
    await writeRuns(store, "w1", 1, 100);
    await store.close();
    const temp = `${checkpointPath(dir, "w1")}.tmp-0123abcd`;
    await writeFile(temp, (await readFile(checkpointPath(dir, "w1"))).subarray(0, 100));

    const view = await openedView(dir, "w1");
    expect(view.diagnostics).toEqual([]);
    expect(answers(view)).toEqual(answers(await fullScanView(dir, "w1")));
    await expect(stat(temp)).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("is not written for a worker deleted meanwhile", async () => {
    const { store } = await openStore(dir, SMALL);
    await store.putWorker(workerRecord("w1"));
    await writeRuns(store, "w1", 1, 100);
    await store.deleteWorker("w1");
    await store.close();
    expect(await readdir(path.join(dir, "workers"))).toEqual([]);
  });
});
