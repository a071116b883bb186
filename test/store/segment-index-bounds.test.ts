import { readFile, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { StoreCorruptionError } from "../../src/store/fs/index.js";
import { entries, openStore, tempDataDir, workerRecord } from "./fs-support.js";

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => ({ dir, cleanup } = await tempDataDir()));
afterEach(async () => cleanup());

const INDEX = path.join("workers", "w1", "transcript", "00000000000000000001.idx");
const OPTIONS = { segmentBytes: 200 };

/** One worker whose transcript spans several sealed segments, closed. */
async function seed(): Promise<void> {
  const { store } = await openStore(dir, OPTIONS);
  await store.putWorker(workerRecord("w1"));
  for (let i = 1; i <= 40; i++) await store.appendTranscript("w1", entries(i, i));
  await store.close();
}

/** Overwrites offset `i` (record i's start) of the first segment's index; header and end offset stay valid. */
async function setIndexOffset(i: number, value: number): Promise<void> {
  const file = path.join(dir, INDEX);
  const bytes = await readFile(file);
  expect(bytes.readUInt32BE(4), "the first segment holds enough records").toBeGreaterThan(i + 1);
  bytes.writeUInt32BE(value, 8 + i * 4);
  await writeFile(file, bytes);
}

/**
 * A sealed segment's index is trusted at open (checked only by its header
 * and end offset), so a read must not trust the offsets inside it: a
 * damaged one is corruption, reported like a damaged record, never a huge
 * or negative allocation.
 */
describe("sealed segment index offsets", () => {
  for (const [name, value] of [
    ["before the previous record's start", 0],
    ["past the segment's end", 0xfffffff0],
  ] as const) {
    it(`an offset ${name} is reported as corruption`, async () => {
      await seed();
      await setIndexOffset(2, value);
      const reports: Array<string | undefined> = [];
      const { store } = await openStore(dir, { ...OPTIONS, onCorruption: (workerId) => reports.push(workerId) });
      // Record 2 (seq 2) ends where record 3 starts: at the damaged offset.
      const read = store.readTranscript("w1", { kind: "after", afterSeq: 1n }, 1);
      await expect(read).rejects.toBeInstanceOf(StoreCorruptionError);
      expect(reports).toEqual(["w1"]);
      expect(store.stats.bytesRead).toBeLessThan(64 * 1024);
      await store.close();
    });
  }
});
