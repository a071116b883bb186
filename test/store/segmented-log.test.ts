import { mkdir } from "node:fs/promises";
import * as path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Disk } from "../../src/store/fs/disk.js";
import { createFileStoreStats, type FileStoreStats } from "../../src/store/fs/file-store-stats.js";
import type { LogRecord } from "../../src/store/fs/record-frame.js";
import { SegmentedLog, type SegmentedLogInit } from "../../src/store/fs/segmented-log.js";
import { tempDataDir } from "./fs-support.js";

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => ({ dir, cleanup } = await tempDataDir()));
afterEach(async () => cleanup());

function records(from: number, to: number): LogRecord[] {
  const list: LogRecord[] = [];
  for (let seq = from; seq <= to; seq++) list.push({ seq: BigInt(seq), body: Buffer.from(`record-${seq}`) });
  return list;
}

async function openLog(init: Partial<SegmentedLogInit> = {}): Promise<SegmentedLog> {
  await mkdir(path.join(dir, "log"), { recursive: true });
  const log = new SegmentedLog({
    disk: new Disk(dir),
    dir: "log",
    segmentBytes: 200,
    stats: createFileStoreStats(),
    ...init,
  });
  await log.open();
  return log;
}

/** Stats whose record counter calls `onRecord` each time a record is decoded. */
function statsCalling(onRecord: (count: number) => void): FileStoreStats {
  const stats = createFileStoreStats();
  let records = 0;
  Object.defineProperty(stats, "recordsRead", {
    get: () => records,
    set: (value: number) => {
      records = value;
      onRecord(value);
    },
  });
  return stats;
}

describe("segmented log", () => {
  it("returns a gap-free run of records when prune drops segments during a read", async () => {
    const writer = await openLog();
    for (let seq = 1; seq <= 60; seq += 3) await writer.append(records(seq, seq + 2));
    await writer.drain();

    // Reopen with a retention bound, so the next prune has whole segments to drop.
    let pruneDuringRead: (() => void) | undefined;
    const log = await openLog({
      retainRecords: 10,
      stats: statsCalling(() => {
        const prune = pruneDuringRead;
        pruneDuringRead = undefined;
        prune?.();
      }),
    });
    // What the append path (the log's group commit) does after a durable batch; private, so reached by a cast.
    const prunable = (log as unknown as { commit: { prune(): Promise<void> } }).commit;
    let pruned: Promise<void> = Promise.resolve();
    pruneDuringRead = () => (pruned = prunable.prune());

    const got = await log.read(1n, 1000);
    await pruned;
    expect(got.length).toBeGreaterThan(0);
    const seqs = got.map((r) => Number(r.seq));
    expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => (seqs[0] ?? 0) + i));
    // A read after the prune starts at the new earliest seq and runs to the end.
    const after = await log.read(1n, 1000);
    expect(after[0]?.seq).toBe(log.earliestSeq);
    expect(after.at(-1)?.seq).toBe(60n);
  });
});
