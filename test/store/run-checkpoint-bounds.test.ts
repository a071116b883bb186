import { readFile, readdir, stat } from "node:fs/promises";
import * as path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { FRAME_HEADER_BYTES } from "../../src/store/fs/record-frame.js";
import { RUN_CHECKPOINT, RUN_CHECKPOINT_FILE } from "../../src/store/fs/run-log.js";
import { openStore, tempDataDir, workerRecord } from "./fs-support.js";
import { checkpointPath, fullScanView, openedView, readRuns, writeRuns } from "./run-checkpoint-support.js";

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => ({ dir, cleanup } = await tempDataDir()));
afterEach(async () => cleanup());

const KiB = 1024;
const TEMP = `${RUN_CHECKPOINT_FILE}.tmp-`;

/** The parts of two opens' views that must be equal (what they read differs on purpose). */
function answers(view: Awaited<ReturnType<typeof openedView>>) {
  const { restored, listed, got } = view;
  return { restored, listed, got };
}

const exists = (file: string) =>
  stat(file).then(
    () => true,
    () => false,
  );

/**
 * The checkpoint was encoded in one synchronous call, O(runs), so a worker
 * with 100,000 runs held the event loop (every other worker's RPCs and runs)
 * for the whole build; one over 64 MiB was silently not written, so open
 * fell back to the full scan for ever; and close built the due checkpoints
 * whatever their size. These tests lower the bounds (FileStoreOptions.runCheckpoint)
 * so that a few thousand runs reach them.
 */
describe("run index checkpoint bounds", () => {
  it("is built and written a bounded frame at a time, the event loop turning between frames", async () => {
    const frameBytes = 4 * KiB;
    /** Checkpoint temp file → the writes into it: bytes, and event-loop turns seen before each. */
    const writes = new Map<string, Array<{ bytes: number; turns: number }>>();
    let turns = 0;
    let turning = true;
    const turn = () => {
      turns++;
      if (turning) setImmediate(turn);
    };
    const { store } = await openStore(dir, {
      segmentBytes: 64 * KiB,
      runCheckpoint: { frameBytes },
      faults: {
        beforeWrite(file, bytes) {
          if (!path.basename(file).startsWith(TEMP)) return;
          const list = writes.get(file) ?? [];
          list.push({ bytes, turns });
          writes.set(file, list);
        },
      },
    });
    setImmediate(turn);
    try {
      await store.putWorker(workerRecord("w1"));
      // 1,500 runs (3,000 records): background checkpoints at 1,024 and 2,048 records, one more at close.
      await writeRuns(store, "w1", 1, 1_500);
    } finally {
      await store.close();
      turning = false;
    }
    expect(writes.size, "checkpoints written").toBeGreaterThanOrEqual(3);
    for (const [file, list] of writes) {
      // The whole checkpoint of 1,500 runs is about 30 KiB: several frames.
      expect(list.length, `${file}: writes`).toBeGreaterThan(4);
      for (const { bytes } of list) expect(bytes, `${file}: bytes in one write`).toBeLessThanOrEqual(frameBytes + FRAME_HEADER_BYTES);
      // No two frames were encoded in the same turn of the event loop: other work ran in between.
      for (let i = 1; i < list.length; i++)
        expect(list[i]?.turns, `${file}: turns before write ${i}`).toBeGreaterThan(list[i - 1]?.turns ?? 0);
    }
    const view = await openedView(dir, "w1");
    expect(view.diagnostics).toEqual([]);
    expect(answers(view)).toEqual(answers(await fullScanView(dir, "w1")));
  });

  it("is written, in frames, when it is larger than one frame may be, and open uses it", async () => {
    const { store } = await openStore(dir, { segmentBytes: 64 * KiB, runCheckpoint: { frameBytes: 4 * KiB } });
    await store.putWorker(workerRecord("w1"));
    await writeRuns(store, "w1", 1, 1_500, KiB, 100);
    const before = await readRuns(store, "w1");
    await store.close();
    expect((await stat(checkpointPath(dir, "w1"))).size, "the checkpoint is larger than a frame").toBeGreaterThan(16 * KiB);

    const view = await openedView(dir, "w1");
    const full = await fullScanView(dir, "w1");
    expect(view.diagnostics).toEqual([]);
    expect(view.recordsRead, "open read the checkpoint, not the run log").toBeLessThan(full.recordsRead / 10);
    expect(answers(view)).toEqual(answers(full));
    expect({ listed: view.listed, got: view.got }).toEqual(before);
  });

  it("is not built at close for a worker over the close bound: open reads the tail after the last background one", async () => {
    const { store } = await openStore(dir, { segmentBytes: 16 * KiB, runCheckpoint: { atCloseMaxRuns: 500 } });
    await store.putWorker(workerRecord("w1"));
    // 1,000 runs (2,000 records): one background checkpoint at 1,024 records, then 976 records after it.
    await writeRuns(store, "w1", 1, 1_000);
    await expect.poll(() => exists(checkpointPath(dir, "w1")), { timeout: 30_000 }).toBe(true);
    const background = await readFile(checkpointPath(dir, "w1"));
    await store.close();
    expect(await readFile(checkpointPath(dir, "w1")), "close left the background checkpoint as it was").toEqual(background);

    const view = await openedView(dir, "w1");
    expect(view.diagnostics).toEqual([]);
    // The tail, plus the recovery scan of the active segment (16 KiB).
    expect(view.recordsRead, "the tail after the background checkpoint").toBeLessThanOrEqual(RUN_CHECKPOINT.everyRecords + 100);
    expect(answers(view)).toEqual(answers(await fullScanView(dir, "w1")));
  });

  it("is abandoned at the next frame when close comes during its build, leaving no temp file", async () => {
    let writes = 0;
    let started: () => void = () => undefined;
    const building = new Promise<void>((resolve) => (started = resolve));
    const { store } = await openStore(dir, {
      segmentBytes: 64 * KiB,
      runCheckpoint: { frameBytes: KiB, atCloseMaxRuns: 100 },
      faults: {
        beforeWrite(file) {
          if (!path.basename(file).startsWith(TEMP)) return;
          writes++;
          started();
        },
      },
    });
    await store.putWorker(workerRecord("w1"));
    // 512 runs: the last batch makes 1,024 records durable, which starts a background checkpoint.
    await writeRuns(store, "w1", 1, RUN_CHECKPOINT.everyRecords / 2);
    await building;
    const writesAtClose = writes;
    await store.close();
    // The write in flight finishes; no further frame is encoded, and none is built at close (512 runs > 100).
    expect(writes - writesAtClose, "checkpoint writes after close began").toBeLessThanOrEqual(1);
    const runsDir = path.dirname(checkpointPath(dir, "w1"));
    expect((await readdir(runsDir)).filter((name) => name.startsWith(TEMP))).toEqual([]);
    expect(await exists(checkpointPath(dir, "w1")), "the abandoned checkpoint was not renamed into place").toBe(false);

    const view = await openedView(dir, "w1");
    expect(view.diagnostics).toEqual([]);
    expect(view.restored.runCount).toBe(512);
    expect(answers(view)).toEqual(answers(await fullScanView(dir, "w1")));
  });
});
