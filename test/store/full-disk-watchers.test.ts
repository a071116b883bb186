import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorDetailSchema, ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import type { WorkerEvent } from "../../gen/worker_runtime/v1/events_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { RuntimeStatus } from "../../gen/worker_runtime/v1/runtime_pb.js";
import { WorkerStatus } from "../../gen/worker_runtime/v1/worker_pb.js";
import { cursorAt, workerCursor } from "../support/cursors.js";
import { follow, sawText, type Followed } from "../support/followed-stream.js";
import { useFullDisk } from "../support/full-disk-runtime.js";
import { type Clients, eventually, runToEnd } from "../support/harness.js";
import { replyChunks } from "../support/openai-chunks.js";

/**
 * A disk that fills (or goes read-only) during a run: the run's end cannot
 * be written, so it cannot be a durable event. The watches open then (and
 * the StreamInput that sent the input) used to wait for it for ever, and
 * the event log and later snapshots kept the run open; a restart even
 * turned its FAILED into INTERRUPTED.
 */
const disk = useFullDisk("wr-full-watch-");

/** How a followed stream ended, failing the test if it has not within `ms` (a stream that never ends is the bug). */
async function endedWithin(followed: Followed, ms = 5_000): Promise<ConnectError | "clean"> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the stream did not end within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([followed.ended, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Expects the stream to have ended with UNAVAILABLE + STORE_UNAVAILABLE naming the worker. */
async function expectStoreUnavailable(followed: Followed, workerId: string): Promise<void> {
  const end = await endedWithin(followed);
  expect(end).toBeInstanceOf(ConnectError);
  const error = end as ConnectError;
  expect(error.code).toBe(Code.Unavailable);
  const detail = error.findDetails(ErrorDetailSchema)[0];
  expect(detail?.reason).toBe(ErrorReason.STORE_UNAVAILABLE);
  expect(detail?.metadata).toEqual({ worker_id: workerId });
  expect(error.rawMessage).toMatch(/could not be persisted.*cursor/);
}

const lastCursor = (events: WorkerEvent[]): string => events.filter((e) => e.cursor !== "").at(-1)?.cursor ?? "";
const runStatuses = (events: WorkerEvent[], runId: string): RunStatus[] =>
  events.flatMap((e) => (e.kind.case === "runChanged" && e.kind.value.runId === runId ? [e.kind.value.status] : []));

describe.each(["ENOSPC", "EROFS"])("a disk that fails writes (%s) during a streamed run", (code) => {
  it("ends its watchers' streams with STORE_UNAVAILABLE, and once it writes again announces the run's end exactly once", async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    disk.fake.enqueue({ kind: "stream", chunks: replyChunks({ text: "partial answer" }), waitBefore: { 3: held } });
    const { harness, clients } = await disk.serve();
    let runId = "";
    let worker: WorkerRef | undefined;
    try {
      worker = (await clients.catalog.createWorker({ runtimeId: "rf" })).worker?.ref as WorkerRef;
      const workerId = worker.workerId;
      const watch = new AbortController();
      const watched = follow(clients.observation.watchWorker({ worker }, { signal: watch.signal }));
      const streamed = follow(clients.interaction.streamInput({ worker, input: { text: "hello" } }));
      await eventually(() => sawText(watched) && sawText(streamed));
      const accepted = watched.events.find((e) => e.kind.case === "runChanged")?.kind;
      runId = accepted?.case === "runChanged" ? accepted.value.runId : "";

      disk.full = code;
      release();
      // Nobody waits for ever: both streams end with the typed error, after the events they had.
      await expectStoreUnavailable(watched, workerId);
      await expectStoreUnavailable(streamed, workerId);
      expect(runStatuses(watched.events, runId)).toEqual([RunStatus.QUEUED, RunStatus.RUNNING]);
      const cursor = lastCursor(watched.events);
      expect(cursor).not.toBe("");

      // The reads answer from memory as before.
      const failed = (await clients.interaction.getRun({ worker, runId })).run;
      expect([failed?.status, failed?.error?.reason]).toEqual([RunStatus.FAILED, ErrorReason.STORE_UNAVAILABLE]);
      expect((await clients.catalog.getWorker({ worker })).worker?.status).toBe(WorkerStatus.IDLE);

      // A watch opened while the disk still fails is not left waiting on the dead run either.
      const early = follow(clients.observation.watchWorker({ worker, afterCursor: cursor }));
      await expectStoreUnavailable(early, workerId);

      disk.full = undefined;
      await eventually(async () => (await clients.management.getRuntime({})).runtime?.status === RuntimeStatus.SERVING);
      // No watch and no write is needed: once the probe finds the store writing, the worker writes what it owes.
      const seen = watched.events.filter((e) => e.seq > 0n).at(-1)?.seq ?? 0n;
      await eventually(
        async () => ((await clients.catalog.getWorker({ worker })).worker?.lastEventSeq ?? 0n) > seen,
        5_000,
        "the owed events",
      );
      // Resumed from the last cursor: the run's end, once, right after what was seen, then the next run's events.
      const resume = new AbortController();
      const resumed = follow(clients.observation.watchWorker({ worker, afterCursor: cursor }, { signal: resume.signal }));
      await eventually(() => runStatuses(resumed.events, runId).length > 0, 5_000, "the run's end after recovery");
      // The snapshot on attach agrees with GetRun and GetWorker: the worker IDLE, no open run, no stale partial text.
      await eventually(async () => (await firstSnapshot(clients, worker))?.worker?.status === WorkerStatus.IDLE, 5_000, "an IDLE snapshot");
      const snapshot = await firstSnapshot(clients, worker);
      expect(snapshot?.activeRun).toBeUndefined();
      expect(snapshot?.queuedRuns).toEqual([]);
      expect(snapshot?.inFlight).toEqual([]);
      expect((await runToEnd(clients, worker, "again"))?.status).toBe(RunStatus.COMPLETED);
      await eventually(() => resumed.events.some((e) => e.kind.case === "runChanged" && e.kind.value.status === RunStatus.COMPLETED));
      expect(runStatuses(resumed.events, runId)).toEqual([RunStatus.FAILED]);
      const seqs = resumed.events.filter((e) => e.seq > 0n).map((e) => e.seq);
      expect(seqs).toEqual(seqs.map((_, i) => seen + 1n + BigInt(i)));
      resume.abort();
    } finally {
      await harness.close();
    }

    // The end is in the store too: a restart keeps it FAILED (it used to become INTERRUPTED), and the log replays it once.
    const reopened = await disk.serve();
    try {
      const stored = (await reopened.clients.interaction.getRun({ worker, runId })).run;
      expect(stored?.status).toBe(RunStatus.FAILED);
      const start = cursorAt(await workerCursor(reopened.clients, worker), 0n);
      const replay = new AbortController();
      const replayed = follow(reopened.clients.observation.watchWorker({ worker, afterCursor: start }, { signal: replay.signal }));
      await eventually(() => replayed.events.some((e) => e.kind.case === "runChanged" && e.kind.value.status === RunStatus.COMPLETED));
      replay.abort();
      expect(runStatuses(replayed.events, runId)).toEqual([RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.FAILED]);
      const replayedSeqs = replayed.events.filter((e) => e.seq > 0n).map((e) => e.seq);
      expect(replayedSeqs).toEqual(replayedSeqs.map((_, i) => BigInt(i + 1)));
    } finally {
      await reopened.harness.close();
    }
  });
});

/** The snapshot a new watch opens with. */
async function firstSnapshot(clients: Clients, worker: WorkerRef | undefined) {
  const controller = new AbortController();
  try {
    for await (const message of clients.observation.watchWorker({ worker }, { signal: controller.signal })) {
      if (message.snapshot) return message.snapshot;
    }
  } finally {
    controller.abort();
  }
  return undefined;
}
