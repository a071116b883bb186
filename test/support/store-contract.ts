import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { create, toJsonString } from "@bufbuild/protobuf";
import { type ConfigBundle, ConfigBundleSchema } from "../../gen/worker_runtime/v1/profile_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import {
  StoreConflictError,
  StoreSequenceError,
  StoreWriteError,
  type OpenedStore,
  type RuntimeStore,
  type StoredEvent,
} from "../../src/runtime/index.js";
import { entries, entryText, events, eventText, NO_REQUEST, run, workerRecord } from "../store/fs-support.js";

/** Options a contract test asks of a fresh store. */
export interface ContractStoreOptions {
  /** Event records to retain per event log (the store's default when unset). */
  eventRetention?: number;
  /** Encoded bytes of events to retain per event log (the store's default when unset). */
  eventRetentionBytes?: number;
}

/** A store under test, open, with what its open returned. */
export interface ContractStore {
  store: RuntimeStore;
  opened: OpenedStore;
  /**
   * Closes the store and opens it again on the same data, configured with
   * `runtimeId` (default {@link CONTRACT_RUNTIME_ID}); absent for stores
   * that keep nothing across a close (the memory store).
   */
  reopen?(runtimeId?: string): Promise<{ store: RuntimeStore; opened: OpenedStore }>;
  /** Closes whatever is open and removes the store's data. */
  cleanup(): Promise<void>;
}

/** Makes a fresh, empty, opened store of one implementation. */
export interface ContractStoreFactory {
  name: string;
  /** Whether the store keeps its data across a close (then every store it opens has `reopen`). */
  durable: boolean;
  open(options: ContractStoreOptions): Promise<ContractStore>;
}

/** The runtime id every contract store is opened with. */
export const CONTRACT_RUNTIME_ID = "rt-contract";

/**
 * The `RuntimeStore` contract (src/runtime/store.ts) as one suite, run
 * against every implementation so that the core can rely on the same
 * semantics whichever store it is given.
 */
export function describeStoreContract(factory: ContractStoreFactory): void {
  describe(`RuntimeStore contract: ${factory.name} store`, () => {
    let subject: ContractStore;
    let store: RuntimeStore;
    const openWith = async (options: ContractStoreOptions = {}): Promise<void> => {
      await subject.cleanup();
      subject = await factory.open(options);
      store = subject.store;
    };
    beforeEach(async () => {
      subject = await factory.open({});
      store = subject.store;
    });
    afterEach(async () => subject.cleanup());
    /** Reopens a durable store (only called by tests that run for durable stores). */
    const reopen = (runtimeId?: string): Promise<{ store: RuntimeStore; opened: OpenedStore }> => {
      if (!subject.reopen) throw new Error(`the ${factory.name} store was declared durable but cannot reopen`);
      return subject.reopen(runtimeId);
    };

    it("opens empty with the configured runtime id", () => {
      expect(subject.opened).toEqual({
        runtimeId: CONTRACT_RUNTIME_ID,
        storeId: expect.stringMatching(/^[0-9a-f]{32}$/),
        workers: [],
        lastRuntimeEventSeq: 0n,
        diagnostics: [],
        configBundles: [],
      });
      expect(store.earliestRuntimeEventSeq()).toBe(1n);
      expect(["memory", "fs"]).toContain(store.kind);
    });

    it("probes a healthy store's writes without error, when it can probe", async () => {
      await store.probeWrite?.();
      await store.putWorker(workerRecord("w1"));
      await store.appendEvents("w1", events(1, 1));
    });

    if (factory.durable)
      it("keeps config bundles across a reopen", async () => {
        const b1 = create(ConfigBundleSchema, { bundleId: "b1", digest: "sha256:x", profiles: [{ name: "p", secretNames: ["K"] }] });
        const b2 = create(ConfigBundleSchema, { bundleId: "b2", digest: "sha256:y" });
        await store.putConfigBundle(b1);
        await store.putConfigBundle(b2);
        const { opened } = await reopen();
        const json = (bundles: readonly ConfigBundle[] | undefined) => (bundles ?? []).map((b) => toJsonString(ConfigBundleSchema, b));
        expect(json(opened.configBundles)).toEqual(json([b1, b2]));
      });

    if (factory.durable)
      it("refuses to open data that belongs to another runtime id", async () => {
        await expect(reopen("rt-someone-else")).rejects.toBeInstanceOf(StoreConflictError);
        const { opened } = await reopen();
        expect(opened.runtimeId).toBe(CONTRACT_RUNTIME_ID);
      });

    it("applies appends to one log in call order, without waiting between them", async () => {
      await store.putWorker(workerRecord("w1"));
      await Promise.all([
        store.appendTranscript("w1", entries(1, 2)),
        store.appendTranscript("w1", entries(3, 3)),
        store.appendTranscript("w1", entries(4, 7)),
        store.appendEvents("w1", events(1, 3)),
        store.appendEvents("w1", events(4, 4)),
        store.appendRuntimeEvents(events(1, 1)),
        store.appendRuntimeEvents(events(2, 5)),
      ]);
      const transcript = await store.readTranscript("w1", { kind: "after", afterSeq: 0n }, 100);
      expect(transcript.map((e) => e.seq)).toEqual([1n, 2n, 3n, 4n, 5n, 6n, 7n]);
      expect(transcript.map(entryText)).toEqual(entries(1, 7).map(entryText));
      expect(texts(await store.readEvents("w1", 0n, 100))).toEqual(["event-1", "event-2", "event-3", "event-4"]);
      expect((await store.readRuntimeEvents(0n, 100)).map((e) => e.seq)).toEqual([1n, 2n, 3n, 4n, 5n]);
    });

    it("accepts an empty batch without changing the log", async () => {
      await store.putWorker(workerRecord("w1"));
      await store.appendEvents("w1", events(1, 2));
      await store.appendEvents("w1", []);
      await store.appendTranscript("w1", []);
      await store.appendRuntimeEvents([]);
      await store.appendEvents("w1", events(3, 3));
      expect((await store.readEvents("w1", 0n, 10)).map((e) => e.seq)).toEqual([1n, 2n, 3n]);
    });

    describe("refuses a batch that does not continue its log, whole", () => {
      const gapped = [
        { name: "a gap inside the batch", from: 4, seqs: [4, 5, 7] },
        { name: "a batch starting past the next seq", from: 5, seqs: [5, 6] },
        { name: "a batch repeating the last seq", from: 3, seqs: [3, 4] },
      ];
      for (const { name, seqs } of gapped) {
        it(`transcript: ${name}`, async () => {
          await store.putWorker(workerRecord("w1"));
          await store.appendTranscript("w1", entries(1, 3));
          const batch = seqs.map((seq) => entries(seq, seq)[0]!);
          await expect(store.appendTranscript("w1", batch)).rejects.toBeInstanceOf(StoreSequenceError);
          expect((await store.readTranscript("w1", { kind: "after", afterSeq: 0n }, 10)).map((e) => e.seq)).toEqual([1n, 2n, 3n]);
          await store.appendTranscript("w1", entries(4, 5));
          expect((await store.readTranscript("w1", { kind: "after", afterSeq: 3n }, 10)).map((e) => e.seq)).toEqual([4n, 5n]);
        });

        it(`worker events: ${name}`, async () => {
          await store.putWorker(workerRecord("w1"));
          await store.appendEvents("w1", events(1, 3));
          const batch = seqs.map((seq) => events(seq, seq)[0]!);
          await expect(store.appendEvents("w1", batch)).rejects.toBeInstanceOf(StoreSequenceError);
          expect((await store.readEvents("w1", 0n, 10)).map((e) => e.seq)).toEqual([1n, 2n, 3n]);
          expect(store.earliestEventSeq("w1")).toBe(1n);
          await store.appendEvents("w1", events(4, 5));
          expect((await store.readEvents("w1", 3n, 10)).map((e) => e.seq)).toEqual([4n, 5n]);
        });

        it(`runtime events: ${name}`, async () => {
          await store.appendRuntimeEvents(events(1, 3));
          const batch = seqs.map((seq) => events(seq, seq)[0]!);
          await expect(store.appendRuntimeEvents(batch)).rejects.toBeInstanceOf(StoreSequenceError);
          expect((await store.readRuntimeEvents(0n, 10)).map((e) => e.seq)).toEqual([1n, 2n, 3n]);
          await store.appendRuntimeEvents(events(4, 5));
          expect((await store.readRuntimeEvents(3n, 10)).map((e) => e.seq)).toEqual([4n, 5n]);
        });
      }

      if (factory.durable)
        it("nothing of a refused batch is kept across a reopen", async () => {
          await store.putWorker(workerRecord("w1"));
          await store.appendTranscript("w1", entries(1, 1));
          await store.appendEvents("w1", events(1, 1));
          await store.appendRuntimeEvents(events(1, 1));
          await expect(store.appendTranscript("w1", entries(2, 3).concat(entries(5, 5)))).rejects.toThrow();
          await expect(store.appendEvents("w1", events(2, 3).concat(events(5, 5)))).rejects.toThrow();
          await expect(store.appendRuntimeEvents(events(2, 3).concat(events(5, 5)))).rejects.toThrow();
          const { opened } = await reopen();
          expect(opened.lastRuntimeEventSeq).toBe(1n);
          expect(opened.workers[0]).toMatchObject({ lastEventSeq: 1n, lastTranscriptSeq: 1n });
        });
    });

    describe("refuses writes for an unknown worker with StoreWriteError", () => {
      const writes: Array<[string, (s: RuntimeStore, workerId: string) => Promise<void>]> = [
        ["putRun", (s, w) => s.putRun(w, run("r1", RunStatus.QUEUED), NO_REQUEST)],
        ["appendTranscript", (s, w) => s.appendTranscript(w, entries(1, 1))],
        ["appendEvents", (s, w) => s.appendEvents(w, events(1, 1))],
      ];
      for (const [method, write] of writes) {
        it(`${method} to a worker never created`, async () => {
          await expect(write(store, "nobody")).rejects.toBeInstanceOf(StoreWriteError);
        });

        it(`${method} to a deleted worker`, async () => {
          await store.putWorker(workerRecord("w1"));
          await store.deleteWorker("w1");
          await expect(write(store, "w1")).rejects.toBeInstanceOf(StoreWriteError);
        });
      }
    });

    describe("reads are bounded both ways", () => {
      beforeEach(async () => {
        await store.putWorker(workerRecord("w1"));
        await store.appendTranscript("w1", entries(1, 10));
        await store.appendEvents("w1", events(1, 10));
        await store.appendRuntimeEvents(events(1, 10));
      });

      it("transcript after a seq, at most limit, oldest first", async () => {
        const read = (afterSeq: bigint, limit: number) =>
          store.readTranscript("w1", { kind: "after", afterSeq }, limit).then((list) => list.map((e) => e.seq));
        expect(await read(0n, 3)).toEqual([1n, 2n, 3n]);
        expect(await read(7n, 100)).toEqual([8n, 9n, 10n]);
        expect(await read(10n, 5)).toEqual([]);
        expect(await read(50n, 5)).toEqual([]);
        expect(await read(2n, 0)).toEqual([]);
        const page = await store.readTranscript("w1", { kind: "after", afterSeq: 4n }, 1);
        expect(page.map(entryText)).toEqual(["message 5"]);
      });

      it("transcript just before a seq (the tail), at most limit, oldest first", async () => {
        const read = (beforeSeq: bigint, limit: number) =>
          store.readTranscript("w1", { kind: "before", beforeSeq }, limit).then((list) => list.map((e) => e.seq));
        expect(await read(11n, 3)).toEqual([8n, 9n, 10n]);
        expect(await read(6n, 2)).toEqual([4n, 5n]);
        expect(await read(4n, 10)).toEqual([1n, 2n, 3n]);
        expect(await read(1n, 10)).toEqual([]);
        expect(await read(11n, 0)).toEqual([]);
        // A bound past the end reads the tail.
        expect(await read(1000n, 2)).toEqual([9n, 10n]);
      });

      it("worker events after a seq, at most limit, ascending", async () => {
        const read = (afterSeq: bigint, limit: number) => store.readEvents("w1", afterSeq, limit).then((list) => list.map((e) => e.seq));
        expect(await read(0n, 4)).toEqual([1n, 2n, 3n, 4n]);
        expect(await read(8n, 100)).toEqual([9n, 10n]);
        expect(await read(10n, 5)).toEqual([]);
        expect(await read(3n, 0)).toEqual([]);
        expect(texts(await store.readEvents("w1", 4n, 1))).toEqual(["event-5"]);
      });

      it("runtime events after a seq, at most limit, ascending", async () => {
        const read = (afterSeq: bigint, limit: number) => store.readRuntimeEvents(afterSeq, limit).then((list) => list.map((e) => e.seq));
        expect(await read(0n, 4)).toEqual([1n, 2n, 3n, 4n]);
        expect(await read(8n, 100)).toEqual([9n, 10n]);
        expect(await read(10n, 5)).toEqual([]);
        expect(texts(await store.readRuntimeEvents(6n, 1))).toEqual(["event-7"]);
      });
    });

    describe("event retention", () => {
      it("reports lastSeq + 1 as the earliest seq of an empty log", async () => {
        await store.putWorker(workerRecord("w1"));
        expect(store.earliestEventSeq("w1")).toBe(1n);
        expect(store.earliestRuntimeEventSeq()).toBe(1n);
      });

      it("keeps at least the retained number of newest events and reads from the earliest kept", async () => {
        await openWith({ eventRetention: 5 });
        await store.putWorker(workerRecord("w1"));
        for (let seq = 1; seq <= 40; seq++) {
          await store.appendEvents("w1", events(seq, seq));
          await store.appendRuntimeEvents(events(seq, seq));
        }
        const workerEarliest = store.earliestEventSeq("w1");
        const runtimeEarliest = store.earliestRuntimeEventSeq();
        for (const earliest of [workerEarliest, runtimeEarliest]) {
          expect(earliest).toBeGreaterThan(1n);
          expect(earliest).toBeLessThanOrEqual(36n);
        }
        const fromStart = await store.readEvents("w1", 0n, 3);
        expect(fromStart.map((e) => e.seq)).toEqual([workerEarliest, workerEarliest + 1n, workerEarliest + 2n]);
        expect((await store.readRuntimeEvents(0n, 1))[0]?.seq).toBe(runtimeEarliest);
        expect((await store.readEvents("w1", 35n, 10)).map((e) => e.seq)).toEqual([36n, 37n, 38n, 39n, 40n]);
        // Transcripts are never pruned.
        await store.appendTranscript("w1", entries(1, 40));
        expect((await store.readTranscript("w1", { kind: "after", afterSeq: 0n }, 1))[0]?.seq).toBe(1n);
      });

      it("keeps at least the retained bytes of newest events, far fewer than the count bound, and reads from the earliest kept", async () => {
        await openWith({ eventRetention: 1_000_000, eventRetentionBytes: 2_000 });
        await store.putWorker(workerRecord("w1"));
        const large = (seq: number): StoredEvent => ({ seq: BigInt(seq), bytes: Buffer.alloc(200, seq) });
        for (let seq = 1; seq <= 100; seq++) {
          await store.appendEvents("w1", [large(seq)]);
          await store.appendRuntimeEvents([large(seq)]);
        }
        for (const earliest of [store.earliestEventSeq("w1"), store.earliestRuntimeEventSeq()]) {
          // At least 2,000 bytes (10 events) kept; older ones gone, give or take a segment file.
          expect(earliest).toBeGreaterThan(80n);
          expect(earliest).toBeLessThanOrEqual(91n);
        }
        const workerEarliest = store.earliestEventSeq("w1");
        const kept = await store.readEvents("w1", 0n, 1000);
        expect(kept.map((e) => e.seq)).toEqual(Array.from({ length: 101 - Number(workerEarliest) }, (_, i) => workerEarliest + BigInt(i)));
        expect(kept[0]?.bytes).toEqual(large(Number(workerEarliest)).bytes);
        expect((await store.readRuntimeEvents(0n, 1))[0]?.seq).toBe(store.earliestRuntimeEventSeq());
      });
    });

    describe("runs", () => {
      beforeEach(async () => store.putWorker(workerRecord("w1")));

      it("puts, gets and replaces runs; the latest state wins", async () => {
        await store.putRun("w1", run("r1", RunStatus.QUEUED), NO_REQUEST);
        await store.putRun("w1", run("r2", RunStatus.QUEUED), NO_REQUEST);
        await store.putRun("w1", run("r1", RunStatus.COMPLETED), NO_REQUEST);
        expect((await store.getRun("w1", "r1"))?.status).toBe(RunStatus.COMPLETED);
        expect((await store.getRun("w1", "r2"))?.status).toBe(RunStatus.QUEUED);
        expect(await store.getRun("w1", "r9")).toBeUndefined();
        expect(await store.getRun("nobody", "r1")).toBeUndefined();
      });

      it("lets reads see a run version from putRun on, before it is durable", async () => {
        await store.putRun("w1", run("r1", RunStatus.QUEUED), NO_REQUEST);
        const written = store.putRun("w1", run("r1", RunStatus.COMPLETED), NO_REQUEST);
        expect((await store.getRun("w1", "r1"))?.status).toBe(RunStatus.COMPLETED);
        expect((await store.listRuns("w1", undefined, 1))[0]?.run.status).toBe(RunStatus.COMPLETED);
        await written;
        expect((await store.getRun("w1", "r1"))?.status).toBe(RunStatus.COMPLETED);
      });

      it("applies puts of one run in call order, without waiting between them", async () => {
        await Promise.all([
          store.putRun("w1", run("r1", RunStatus.QUEUED), NO_REQUEST),
          store.putRun("w1", run("r1", RunStatus.RUNNING), NO_REQUEST),
          store.putRun("w1", run("r2", RunStatus.QUEUED), NO_REQUEST),
          store.putRun("w1", run("r1", RunStatus.CANCELLED), NO_REQUEST),
        ]);
        expect((await store.getRun("w1", "r1"))?.status).toBe(RunStatus.CANCELLED);
        expect(ordinals(await store.listRuns("w1", undefined, 10))).toEqual([
          [2, "r2"],
          [1, "r1"],
        ]);
      });

      it("lists runs newest first by creation ordinal, paged backwards", async () => {
        for (let i = 1; i <= 5; i++) await store.putRun("w1", run(`r${i}`, RunStatus.QUEUED), NO_REQUEST);
        // Replacing a run keeps its ordinal.
        await store.putRun("w1", run("r2", RunStatus.FAILED), NO_REQUEST);
        expect(ordinals(await store.listRuns("w1", undefined, 2))).toEqual([
          [5, "r5"],
          [4, "r4"],
        ]);
        const page = await store.listRuns("w1", 4, 10);
        expect(ordinals(page)).toEqual([
          [3, "r3"],
          [2, "r2"],
          [1, "r1"],
        ]);
        expect(page[1]?.run.status).toBe(RunStatus.FAILED);
        expect(await store.listRuns("w1", 1, 10)).toEqual([]);
        expect(ordinals(await store.listRuns("w1", 100, 1))).toEqual([[5, "r5"]]);
        expect(await store.listRuns("w1", undefined, 0)).toEqual([]);
      });

      it("keeps runs of different workers apart", async () => {
        await store.putWorker(workerRecord("w2"));
        await store.putRun("w1", run("r1", RunStatus.QUEUED), NO_REQUEST);
        await store.putRun("w2", run("r2", RunStatus.QUEUED), NO_REQUEST);
        expect(await store.getRun("w1", "r2")).toBeUndefined();
        expect(ordinals(await store.listRuns("w2", undefined, 10))).toEqual([[1, "r2"]]);
      });
    });

    describe("workers", () => {
      it("replaces a worker's snapshot and keeps its logs", async () => {
        await store.putWorker(workerRecord("w1", "first"));
        await store.appendEvents("w1", events(1, 2));
        await store.putWorker(workerRecord("w1", "second"));
        expect((await store.readEvents("w1", 0n, 10)).map((e) => e.seq)).toEqual([1n, 2n]);
        await store.appendEvents("w1", events(3, 3));
        if (!factory.durable) return;
        const { opened } = await reopen();
        expect(opened.workers.map((w) => w.record.worker.displayName)).toEqual(["second"]);
      });

      it("deletes a worker with all of its logs; the id can be used again from empty", async () => {
        await store.putWorker(workerRecord("w1"));
        await store.putWorker(workerRecord("w2"));
        await store.appendTranscript("w1", entries(1, 3));
        await store.appendEvents("w1", events(1, 3));
        await store.putRun("w1", run("r1", RunStatus.COMPLETED), NO_REQUEST);
        await store.deleteWorker("w1");
        await store.deleteWorker("never-existed");
        await store.putWorker(workerRecord("w1", "again"));
        expect(await store.readTranscript("w1", { kind: "after", afterSeq: 0n }, 10)).toEqual([]);
        expect(await store.readEvents("w1", 0n, 10)).toEqual([]);
        expect(store.earliestEventSeq("w1")).toBe(1n);
        expect(await store.getRun("w1", "r1")).toBeUndefined();
        expect(await store.listRuns("w1", undefined, 10)).toEqual([]);
        await store.appendEvents("w1", events(1, 1));
        if (!factory.durable) return;
        const { opened } = await reopen();
        expect(opened.workers.map((w) => [w.record.worker.displayName, w.lastEventSeq])).toEqual([
          ["w2", 0n],
          ["again", 1n],
        ]);
      });
    });

    if (factory.durable)
      it("has everything acknowledged durable: a reopen reads it all back", async () => {
        await store.putWorker(workerRecord("w1"));
        await store.putWorker(workerRecord("w2"));
        await Promise.all([
          store.appendTranscript("w1", entries(1, 4)),
          store.appendEvents("w1", events(1, 6)),
          store.appendRuntimeEvents(events(1, 3)),
          store.putRun("w1", run("r1", RunStatus.COMPLETED, "req-1", "hello"), { fingerprint: "fp-given-1" }),
          store.putRun("w1", run("r2", RunStatus.RUNNING, "req-2", "again"), { fingerprint: "fp-given-2" }),
          store.putRun("w1", run("r3", RunStatus.QUEUED), NO_REQUEST),
        ]);
        const { store: reopened, opened } = await reopen();
        expect(opened.runtimeId).toBe(CONTRACT_RUNTIME_ID);
        expect(opened.lastRuntimeEventSeq).toBe(3n);
        expect(opened.workers.map((w) => w.record.worker.ref?.workerId)).toEqual(["w1", "w2"]);
        const w1 = opened.workers[0]!;
        expect(w1).toMatchObject({ lastEventSeq: 6n, lastTranscriptSeq: 4n, runCount: 3 });
        expect(w1.unfinishedRuns.map((r) => r.runId).sort()).toEqual(["r2", "r3"]);
        // The store keeps the fingerprint the core gave it; it does not derive its own.
        expect(w1.recentRequestIds).toEqual([
          { requestId: "req-1", runId: "r1", fingerprint: "fp-given-1" },
          { requestId: "req-2", runId: "r2", fingerprint: "fp-given-2" },
        ]);
        expect((await reopened.readTranscript("w1", { kind: "after", afterSeq: 0n }, 10)).map(entryText)).toEqual(
          entries(1, 4).map(entryText),
        );
        expect(texts(await reopened.readEvents("w1", 4n, 10))).toEqual(["event-5", "event-6"]);
        expect((await reopened.readRuntimeEvents(0n, 10)).map((e) => e.seq)).toEqual([1n, 2n, 3n]);
        expect(ordinals(await reopened.listRuns("w1", undefined, 10))).toEqual([
          [3, "r3"],
          [2, "r2"],
          [1, "r1"],
        ]);
        // The logs continue where they were.
        await reopened.appendEvents("w1", events(7, 7));
        await reopened.appendRuntimeEvents(events(4, 4));
        await expect(reopened.appendTranscript("w1", entries(6, 6))).rejects.toBeInstanceOf(StoreSequenceError);
      });
  });
}

function texts(list: StoredEvent[]): string[] {
  return list.map(eventText);
}

function ordinals(list: Array<{ ordinal: number; run: { runId: string } }>): Array<[number, string]> {
  return list.map((stored) => [stored.ordinal, stored.run.runId]);
}
