import { readdir, stat } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { StoredEvent } from "../../src/runtime/index.js";
import { WORKERS_DIR, workerDirName } from "../../src/store/fs/layout.js";
import { entries, events, openStore, tempDataDir, workerRecord } from "./fs-support.js";

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => ({ dir, cleanup } = await tempDataDir()));
afterEach(async () => cleanup());

describe("file store retention and bounded reads", () => {
  it("prunes whole old event segments past the retention bound and reports the earliest seq", async () => {
    const options = { segmentBytes: 512, eventRetention: 50 };
    const { store } = await openStore(dir, options);
    await store.putWorker(workerRecord("w1"));
    for (let i = 1; i <= 300; i += 10) {
      await store.appendEvents("w1", events(i, i + 9));
      await store.appendRuntimeEvents(events(i, i + 9));
      await store.appendTranscript("w1", entries(i, i + 9));
    }
    const earliest = store.earliestEventSeq("w1");
    expect(earliest).toBeGreaterThan(1n);
    expect(earliest).toBeLessThanOrEqual(251n);
    const retained = await store.readEvents("w1", 0n, 1000);
    expect(retained[0]?.seq).toBe(earliest);
    expect(retained.at(-1)?.seq).toBe(300n);
    expect(store.earliestRuntimeEventSeq()).toBeGreaterThan(1n);
    // The transcript is never pruned.
    expect((await store.readTranscript("w1", { kind: "after", afterSeq: 0n }, 1))[0]?.seq).toBe(1n);
    await store.close();

    const reopened = await openStore(dir, options);
    expect(reopened.store.earliestEventSeq("w1")).toBe(earliest);
    expect(reopened.opened.workers[0]?.lastEventSeq).toBe(300n);
    await reopened.store.close();
  });

  it("prunes whole old event segments past the byte bound, long before the count bound, and keeps the disk within it", async () => {
    const options = { segmentBytes: 16 * 1024, eventRetention: 100_000, eventRetentionBytes: 64 * 1024 };
    const { store } = await openStore(dir, options);
    await store.putWorker(workerRecord("w1"));
    const large = (seq: number): StoredEvent => ({ seq: BigInt(seq), bytes: Buffer.alloc(4_000, seq) });
    for (let seq = 1; seq <= 200; seq += 5) {
      const batch = [0, 1, 2, 3, 4].map((i) => large(seq + i));
      await store.appendEvents("w1", batch);
      await store.appendRuntimeEvents(batch);
    }
    const earliest = store.earliestEventSeq("w1");
    // 64 KiB is 16 of these events; whole segments (one batch of 5 each) go, so 16 to 20 are kept.
    expect(earliest).toBeGreaterThanOrEqual(181n);
    expect(earliest).toBeLessThanOrEqual(185n);
    expect(store.earliestRuntimeEventSeq()).toBe(earliest);
    const onDisk = await directoryBytes(path.join(dir, WORKERS_DIR, workerDirName("w1"), "events"));
    expect(onDisk).toBeLessThanOrEqual(options.eventRetentionBytes + options.segmentBytes + 4_096);
    await store.close();

    const reopened = await openStore(dir, options);
    expect(reopened.store.earliestEventSeq("w1")).toBe(earliest);
    expect((await reopened.store.readEvents("w1", 0n, 1))[0]?.seq).toBe(earliest);
    await reopened.store.close();
  });

  it("reports lastSeq + 1 as the earliest seq of an empty log", async () => {
    const { store } = await openStore(dir);
    await store.putWorker(workerRecord("w1"));
    expect(store.earliestEventSeq("w1")).toBe(1n);
    expect(store.earliestRuntimeEventSeq()).toBe(1n);
    await store.close();
  });

  it("reads the last entries of a transcript at a cost independent of its length", async () => {
    const options = { segmentBytes: 4096 };
    const measure = async (total: number): Promise<{ bytes: number; records: number }> => {
      const { store } = await openStore(dir, options);
      const id = `w${total}`;
      await store.putWorker(workerRecord(id));
      for (let i = 1; i <= total; i += 500) await store.appendTranscript(id, entries(i, Math.min(total, i + 499)));
      await store.close();
      const reopened = await openStore(dir, options);
      const before = { ...reopened.store.stats };
      const tail = await reopened.store.readTranscript(id, { kind: "before", beforeSeq: BigInt(total + 1) }, 100);
      expect(tail.map((e) => Number(e.seq))).toEqual(Array.from({ length: 100 }, (_, i) => total - 99 + i));
      const middle = await reopened.store.readTranscript(id, { kind: "before", beforeSeq: BigInt(total / 2) }, 100);
      expect(middle).toHaveLength(100);
      const cost = {
        bytes: reopened.store.stats.bytesRead - before.bytesRead,
        records: reopened.store.stats.recordsRead - before.recordsRead,
      };
      await reopened.store.close();
      return cost;
    };
    const small = await measure(1_000);
    const large = await measure(50_000);
    expect(small.records).toBe(200);
    expect(large.records).toBe(200);
    // Same entry sizes, so same data bytes; only a few index bytes may differ.
    expect(Math.abs(large.bytes - small.bytes)).toBeLessThanOrEqual(2 * 101 * 4);
  });
});

/** Bytes of the files in a directory. */
async function directoryBytes(directory: string): Promise<number> {
  let total = 0;
  for (const name of await readdir(directory)) total += (await stat(path.join(directory, name))).size;
  return total;
}
