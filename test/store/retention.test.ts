import { afterEach, beforeEach, describe, expect, it } from "vitest";
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
