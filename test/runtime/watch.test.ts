import { toBinary } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { StopReason } from "../../gen/worker_runtime/v1/run_pb.js";
import { BusyPolicy, type WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { InFlightBlockKind, type WorkerEvent, WorkerEventSchema } from "../../gen/worker_runtime/v1/events_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { cursorAt, workerCursor } from "../support/cursors.js";
import { expectReason } from "../support/errors.js";
import { type Clients, eventually, PROTOCOLS, runToEnd, startHarness } from "../support/harness.js";
import { holdOpen, replyWith, ScriptedBackend, type RunScript } from "../support/scripted-backend.js";
import { STORE_FACTORIES } from "../support/stores.js";
import { useRuntimeSuite } from "../support/suite.js";

/** A run with several deltas and commits spread over time, so cuts land mid-run. */
const chattyRun: RunScript = async (request, sink) => {
  for (let block = 0; block < 3; block++) {
    const blockId = `${request.run.runId}-${block}`;
    for (let i = 0; i < 4; i++) {
      sink.textDelta(blockId, `${block}.${i} `);
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    await sink.commit(
      { case: "assistantMessage", value: { $typeName: "worker_runtime.v1.AssistantMessage", text: `block ${block}` } },
      blockId,
    );
  }
  return { kind: "completed", stopReason: StopReason.END_TURN };
};

/** A tiny deterministic PRNG (mulberry32), so failures reproduce. */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe.each(STORE_FACTORIES)("watching workers ($name store)", (storeFactory) => {
  describe.each(PROTOCOLS)("over %s", (protocol) => {
    const suite = useRuntimeSuite(storeFactory, protocol, {
      backend: () => new ScriptedBackend(chattyRun),
      limits: { maxQueueDepth: 100 },
      heartbeatIntervalMs: 200,
    });

    it("sends a snapshot with the partial text at once to a watcher attaching mid-run", async () => {
      const worker = await suite.newWorker();
      const held = holdOpen("The answer so far");
      suite.backend.enqueue(held.script);
      const sent = await suite.clients.interaction.sendInput({ worker: worker.ref, input: { text: "question" } });
      await held.started;
      await eventually(() => suite.harness.runtime.getWorker({ worker: worker.ref }).lastEventSeq > 0n);
      const abort = new AbortController();
      const stream = suite.clients.observation.watchWorker({ worker: worker.ref }, { signal: abort.signal });
      const iterator = stream[Symbol.asyncIterator]();
      let first = (await iterator.next()).value;
      // The in-flight text is delivered once its turn in the stream comes; wait for it to show.
      for (let tries = 0; first?.snapshot?.inFlight.length === 0 && tries < 50; tries++) {
        abort.abort();
        await new Promise((resolve) => setTimeout(resolve, 10));
        const retry = suite.clients.observation.watchWorker({ worker: worker.ref })[Symbol.asyncIterator]();
        first = (await retry.next()).value;
        await retry.return?.();
      }
      abort.abort();
      const snapshot = first?.snapshot;
      expect(snapshot?.activeRun?.runId).toBe(sent.run?.runId);
      expect(snapshot?.activeRun?.status).toBe(RunStatus.RUNNING);
      expect(snapshot?.inFlight).toHaveLength(1);
      expect(snapshot?.inFlight[0]?.kind).toBe(InFlightBlockKind.TEXT);
      expect(snapshot?.inFlight[0]?.text).toBe("The answer so far");
      expect(snapshot?.cursor).not.toBe("");
      held.release();
    });

    it("resumes from the last cursor at 50+ random cut points with no gap and no duplicate", async () => {
      const worker = await suite.newWorker();
      const next = random(protocol === "grpc" ? 7 : 11);
      const fromStart = cursorAt(await workerCursor(suite.clients, worker.ref), 0n);

      // The reference: one uninterrupted watcher from the very start.
      const reference: bigint[] = [];
      const referenceAbort = new AbortController();
      const referenceDone = (async () => {
        try {
          for await (const message of suite.clients.observation.watchWorker(
            { worker: worker.ref, afterCursor: fromStart },
            { signal: referenceAbort.signal },
          )) {
            for (const event of message.events) if (event.seq > 0n) reference.push(event.seq);
          }
        } catch {
          // aborted at the end of the test
        }
      })();

      const runs = 12;
      let lastRunId = "";
      for (let i = 0; i < runs; i++) {
        const { run } = await suite.clients.interaction.sendInput({
          worker: worker.ref,
          input: { text: `q${i}` },
          busyPolicy: BusyPolicy.ENQUEUE,
        });
        lastRunId = run?.runId ?? "";
      }

      // The resumer: cut after a random number of messages, resume from the last cursor.
      const resumed: bigint[] = [];
      let cursor = fromStart;
      let cuts = 0;
      const finished = async (): Promise<boolean> => {
        const run = await suite.clients.interaction.getRun({ worker: worker.ref, runId: lastRunId });
        return (
          run.run?.status === RunStatus.COMPLETED &&
          resumed.length > 0 &&
          resumed[resumed.length - 1] === suite.harness.runtime.getWorker({ worker: worker.ref }).lastEventSeq
        );
      };
      while (cuts < 50 || !(await finished())) {
        const abort = new AbortController();
        const budget = 1 + Math.floor(next() * 4);
        let taken = 0;
        try {
          for await (const message of suite.clients.observation.watchWorker(
            { worker: worker.ref, afterCursor: cursor },
            { signal: abort.signal },
          )) {
            for (const event of message.events) {
              if (event.seq > 0n) {
                resumed.push(event.seq);
                cursor = event.cursor;
              }
            }
            if (message.heartbeat) cursor = message.heartbeat.cursor || cursor;
            if (++taken >= budget) break;
          }
        } finally {
          abort.abort();
        }
        cuts++;
        if (cuts > 2000) throw new Error("resumer never caught up");
      }
      await eventually(() => reference.length >= resumed.length, 5_000, "reference watcher");
      referenceAbort.abort();
      await referenceDone;

      expect(cuts).toBeGreaterThanOrEqual(50);
      expect(resumed.length).toBeGreaterThan(100);
      expect(resumed).toEqual(reference.slice(0, resumed.length));
      expect(resumed).toEqual(resumed.map((_, i) => BigInt(i + 1)));
    });

    it("delivers durable events in order with cursors and live deltas in between", async () => {
      const worker = await suite.newWorker();
      suite.backend.enqueue(replyWith("abcdef", 3));
      const abort = new AbortController();
      const events: WorkerEvent[] = [];
      const watching = (async () => {
        try {
          for await (const message of suite.clients.observation.watchWorker({ worker: worker.ref }, { signal: abort.signal })) {
            events.push(...message.events);
            if (events.some((e) => e.kind.case === "runChanged" && e.kind.value.status === RunStatus.COMPLETED)) break;
          }
        } finally {
          abort.abort();
        }
      })();
      await eventually(() => suite.harness.runtime.stats().subscriptions > 0);
      await suite.clients.interaction.sendInput({ worker: worker.ref, input: { text: "go" } });
      await watching;
      const kinds = events.map((e) => e.kind.case);
      expect(kinds.filter((k) => k === "textDelta")).toHaveLength(3);
      const firstDelta = kinds.indexOf("textDelta");
      const commitIndex = events.findIndex((e) => e.kind.case === "transcriptAppended" && e.kind.value.content.case === "assistantMessage");
      expect(firstDelta).toBeGreaterThan(kinds.indexOf("transcriptAppended"));
      expect(commitIndex).toBeGreaterThan(kinds.lastIndexOf("textDelta"));
      const durable = events.filter((e) => e.seq > 0n);
      for (const [i, event] of durable.entries()) {
        expect(event.cursor).not.toBe("");
        if (i > 0) expect(event.seq).toBe((durable[i - 1]?.seq ?? 0n) + 1n);
      }
      expect(events.filter((e) => e.seq === 0n).every((e) => e.cursor === "")).toBe(true);
    });

    it("sends heartbeats on an idle stream", async () => {
      const worker = await suite.newWorker();
      const abort = new AbortController();
      let heartbeats = 0;
      try {
        for await (const message of suite.clients.observation.watchWorker({ worker: worker.ref }, { signal: abort.signal })) {
          if (message.heartbeat) heartbeats++;
          if (heartbeats === 2) break;
        }
      } finally {
        abort.abort();
      }
      expect(heartbeats).toBe(2);
    });

    it("refuses malformed and future cursors", async () => {
      const worker = await suite.newWorker();
      const current = await workerCursor(suite.clients, worker.ref);
      const malformed = ["garbage", "w!", "wzzzzzzzzzzzzzzzzzzzzzzz", `${current}!`, cursorAt(current, 36n ** 14n)];
      for (const afterCursor of malformed) {
        await expectReason(
          async () => {
            for await (const _ of suite.clients.observation.watchWorker({ worker: worker.ref, afterCursor })) break;
          },
          Code.InvalidArgument,
          ErrorReason.INVALID_ARGUMENT,
        );
      }
      // The format before cursors named their stream: refused as foreign, not read as a seq.
      await expectReason(
        async () => {
          for await (const _ of suite.clients.observation.watchWorker({ worker: worker.ref, afterCursor: "r5" })) break;
        },
        Code.InvalidArgument,
        ErrorReason.CURSOR_FOREIGN,
      );
      await expectReason(
        async () => {
          for await (const _ of suite.clients.observation.watchWorker({ worker: worker.ref, afterCursor: cursorAt(current, 999n) })) break;
        },
        Code.InvalidArgument,
        ErrorReason.INVALID_ARGUMENT,
      );
    });

    it("streams runtime-wide events and resumes them by cursor", async () => {
      const runtimeId = suite.harness.runtime.runtimeId;
      const iterator = suite.clients.observation.watchRuntime({ runtimeId })[Symbol.asyncIterator]();
      const first = await iterator.next();
      const cursor = first.value?.snapshot?.cursor ?? "";
      expect(first.value?.snapshot?.runtime?.runtimeId).toBe(runtimeId);
      await iterator.return?.();
      const worker = await suite.newWorker();
      // Events still being written when the snapshot was cut (e.g. from earlier tests) may come
      // first; what matters is that ours arrives, once, in a gap-free sequence.
      const created: string[] = [];
      const seqs: bigint[] = [];
      const abort = new AbortController();
      try {
        for await (const message of suite.clients.observation.watchRuntime({ runtimeId, afterCursor: cursor }, { signal: abort.signal })) {
          for (const event of message.events) {
            seqs.push(event.seq);
            if (event.kind.case === "workerCreated") created.push(event.kind.value.ref?.workerId ?? "");
          }
          if (created.includes(worker.ref?.workerId ?? "")) break;
        }
      } finally {
        abort.abort();
      }
      expect(created.filter((id) => id === worker.ref?.workerId)).toHaveLength(1);
      expect(seqs).toEqual(seqs.map((_, i) => (seqs[0] ?? 0n) + BigInt(i)));
    });

    it("announces a new worker with workerCreated before any workerUpdated", async () => {
      const runtimeId = suite.harness.runtime.runtimeId;
      const iterator = suite.clients.observation.watchRuntime({ runtimeId })[Symbol.asyncIterator]();
      const cursor = (await iterator.next()).value?.snapshot?.cursor ?? "";
      await iterator.return?.();
      const worker = await suite.newWorker();
      const id = worker.ref?.workerId ?? "";
      const kinds: string[] = [];
      const abort = new AbortController();
      try {
        for await (const message of suite.clients.observation.watchRuntime({ runtimeId, afterCursor: cursor }, { signal: abort.signal })) {
          for (const event of message.events) {
            const kind = event.kind;
            if ((kind.case === "workerCreated" || kind.case === "workerUpdated") && kind.value.ref?.workerId === id) kinds.push(kind.case);
          }
          if (kinds.includes("workerCreated")) break;
        }
      } finally {
        abort.abort();
      }
      expect(kinds[0]).toBe("workerCreated");
    });
  });
});

describe("retention", () => {
  it("answers a cursor older than retention with OUT_OF_RANGE and the earliest cursor", async () => {
    const harness = await startHarness({ executionBackend: new ScriptedBackend(), limits: { eventRetention: 10 } });
    try {
      const clients = harness.connect("grpc");
      const { worker } = await clients.catalog.createWorker({ runtimeId: harness.runtime.runtimeId });
      let lastRun = "";
      for (let i = 0; i < 4; i++) {
        const { run } = await clients.interaction.sendInput({
          worker: worker?.ref,
          input: { text: `m${i}` },
          busyPolicy: BusyPolicy.ENQUEUE,
        });
        lastRun = run?.runId ?? "";
      }
      await eventually(
        async () => (await clients.interaction.getRun({ worker: worker?.ref, runId: lastRun })).run?.status === RunStatus.COMPLETED,
      );
      const lastSeq = harness.runtime.getWorker({ worker: worker?.ref }).lastEventSeq;
      expect(lastSeq).toBeGreaterThan(10n);
      const earliest = await earliestAfterExpiredCursor(clients, worker?.ref as WorkerRef);
      const replayed: bigint[] = [];
      for await (const message of clients.observation.watchWorker({ worker: worker?.ref, afterCursor: earliest })) {
        replayed.push(...message.events.filter((e) => e.seq > 0n).map((e) => e.seq));
        if (replayed[replayed.length - 1] === lastSeq) break;
      }
      expect(replayed).toHaveLength(10);
      expect(replayed[replayed.length - 1]).toBe(lastSeq);
    } finally {
      await harness.close();
    }
  });

  it("answers a cursor trimmed by the byte bound (large inputs, far under the count) with OUT_OF_RANGE and the earliest cursor", async () => {
    const retentionBytes = 256 * 1024;
    const limits = { eventRetentionBytes: retentionBytes, maxMessageBytes: 256 * 1024 };
    const harness = await startHarness({ executionBackend: new ScriptedBackend(), limits });
    try {
      const clients = harness.connect("grpc");
      const { worker } = await clients.catalog.createWorker({ runtimeId: harness.runtime.runtimeId });
      for (let i = 0; i < 6; i++) await runToEnd(clients, worker?.ref as WorkerRef, `${i}`.repeat(50_000));
      const lastSeq = harness.runtime.getWorker({ worker: worker?.ref }).lastEventSeq;
      const earliest = await earliestAfterExpiredCursor(clients, worker?.ref as WorkerRef);
      const replayed: WorkerEvent[] = [];
      for await (const message of clients.observation.watchWorker({ worker: worker?.ref, afterCursor: earliest })) {
        replayed.push(...message.events.filter((e) => e.seq > 0n));
        if (replayed.at(-1)?.seq === lastSeq) break;
      }
      // Gap-free from the earliest kept to the last, within the byte bound, and far fewer than the 100,000 of the count bound.
      const seqs = replayed.map((e) => e.seq);
      expect(seqs).toEqual(seqs.map((_, i) => lastSeq - BigInt(seqs.length - 1 - i)));
      expect(seqs.length).toBeLessThan(Number(lastSeq) - 1);
      const bytes = replayed.reduce((sum, e) => sum + toBinary(WorkerEventSchema, e).byteLength, 0);
      expect(bytes).toBeLessThanOrEqual(retentionBytes);
      expect(bytes).toBeGreaterThan(retentionBytes / 2);
    } finally {
      await harness.close();
    }
  });
});

/** Watching from the worker's first cursor, trimmed by retention, is OUT_OF_RANGE CURSOR_EXPIRED: the earliest cursor it names. */
async function earliestAfterExpiredCursor(clients: Clients, worker: WorkerRef): Promise<string> {
  const first = cursorAt(await workerCursor(clients, worker), 1n);
  const detail = await expectReason(
    async () => {
      for await (const _ of clients.observation.watchWorker({ worker, afterCursor: first })) break;
    },
    Code.OutOfRange,
    ErrorReason.CURSOR_EXPIRED,
  );
  const earliest = detail.metadata["earliest_cursor"] ?? "";
  expect(earliest).not.toBe("");
  return earliest;
}
