import { Code, ConnectError } from "@connectrpc/connect";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorDetailSchema, ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import type { RuntimeEvent } from "../../gen/worker_runtime/v1/events_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { RuntimeStatus } from "../../gen/worker_runtime/v1/runtime_pb.js";
import { type Worker, WorkerStatus } from "../../gen/worker_runtime/v1/worker_pb.js";
import { useFullDisk } from "../support/full-disk-runtime.js";
import { type Clients, eventually, runToEnd } from "../support/harness.js";
import { replyChunks } from "../support/openai-chunks.js";

/**
 * The runtime-wide stream's variant of full-disk-watchers.test.ts: a
 * runtime event that cannot be written (disk full, read-only) is rolled
 * back and reaches nobody, so a WatchRuntime open then (the Backend's relay
 * rides on one) kept showing the worker running, with no error. It must end
 * with the typed error, and once the store writes the worker's latest state
 * must be published again, so a watch resumed from its last cursor
 * converges to what GetWorker says, gap-free.
 */
/** Only the runtime-wide event log fails (the workers' files still write). */
let runtimeLogFull = false;
const disk = useFullDisk("wr-full-runtime-watch-", (file) => {
  if (runtimeLogFull && file.startsWith(`events${path.sep}`)) throw Object.assign(new Error("fault: ENOSPC"), { code: "ENOSPC" });
});
afterEach(() => {
  runtimeLogFull = false;
});

interface FollowedRuntime {
  events: RuntimeEvent[];
  ended: Promise<ConnectError | "clean">;
}

function followRuntime(clients: Clients, afterCursor: string, signal?: AbortSignal): FollowedRuntime {
  const events: RuntimeEvent[] = [];
  const ended = (async () => {
    try {
      for await (const message of clients.observation.watchRuntime({ runtimeId: "rf", afterCursor }, { signal }))
        events.push(...message.events);
      return "clean" as const;
    } catch (error) {
      return ConnectError.from(error);
    }
  })();
  return { events, ended };
}

/** Expects the stream to end, within 5 s, with UNAVAILABLE + STORE_UNAVAILABLE naming the runtime. */
async function expectStoreUnavailable(followed: FollowedRuntime): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error("the runtime watch did not end within 5000 ms")), 5_000);
  });
  const end = await Promise.race([followed.ended, timeout]).finally(() => clearTimeout(timer));
  expect(end).toBeInstanceOf(ConnectError);
  const error = end as ConnectError;
  expect(error.code).toBe(Code.Unavailable);
  const detail = error.findDetails(ErrorDetailSchema)[0];
  expect(detail?.reason).toBe(ErrorReason.STORE_UNAVAILABLE);
  expect(detail?.metadata).toEqual({ runtime_id: "rf" });
  expect(error.rawMessage).toMatch(/runtime's events could not be persisted.*cursor/);
}

const lastCursor = (events: RuntimeEvent[]): string => events.at(-1)?.cursor ?? "";
const workerStates = (events: RuntimeEvent[], workerId: string) =>
  events.flatMap((e) =>
    (e.kind.case === "workerUpdated" || e.kind.case === "workerCreated") && e.kind.value.ref?.workerId === workerId ? [e.kind.value] : [],
  );

describe.each(["ENOSPC", "EROFS"])("a disk that fails writes (%s) under a WatchRuntime", (code) => {
  it("ends the watch with STORE_UNAVAILABLE, and once it writes again publishes the worker's latest state, gap-free", async () => {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    disk.fake.enqueue({ kind: "stream", chunks: replyChunks({ text: "partial answer" }), waitBefore: { 3: held } });
    const { harness, clients } = await disk.serve();
    try {
      const worker = (await clients.catalog.createWorker({ runtimeId: "rf" })).worker?.ref as WorkerRef;
      const watch = new AbortController();
      const watched = followRuntime(clients, "", watch.signal);
      await clients.interaction.sendInput({ worker, input: { text: "hello" } });
      await eventually(() => workerStates(watched.events, worker.workerId).some((w) => w.status === WorkerStatus.RUNNING));
      await eventually(() => disk.fake.requests.length > 0);

      disk.full = code;
      release();
      // The run fails (its end cannot be written), and the watch is told it missed that instead of waiting.
      await expectStoreUnavailable(watched);
      // Nothing that is not durable was sent: every event has its cursor, seqs without a gap.
      expect(watched.events.every((e) => e.seq > 0n && e.cursor !== "")).toBe(true);
      const seqs = watched.events.map((e) => e.seq);
      expect(seqs).toEqual(seqs.map((_, i) => (seqs[0] ?? 0n) + BigInt(i)));
      expect(workerStates(watched.events, worker.workerId).at(-1)?.status).toBe(WorkerStatus.RUNNING);
      const cursor = lastCursor(watched.events);
      const seen = watched.events.at(-1)?.seq ?? 0n;
      await eventually(async () => (await clients.catalog.getWorker({ worker })).worker?.status === WorkerStatus.IDLE);

      // A watch opened while the disk still fails is not left showing the stale state either.
      await expectStoreUnavailable(followRuntime(clients, cursor));

      disk.full = undefined;
      await eventually(async () => (await clients.management.getRuntime({})).runtime?.status === RuntimeStatus.SERVING);
      // Resumed from the last cursor: the worker's latest state (IDLE, no active run) right after what was seen.
      const resume = new AbortController();
      const resumed = followRuntime(clients, cursor, resume.signal);
      await eventually(
        () => workerStates(resumed.events, worker.workerId).some((w) => w.status === WorkerStatus.IDLE),
        5_000,
        "the IDLE worker",
      );
      const truth = (await clients.catalog.getWorker({ worker })).worker;
      const shown = workerStates(resumed.events, worker.workerId).at(-1);
      expect([shown?.status, shown?.activeRunId, shown?.queuedRuns]).toEqual([truth?.status, truth?.activeRunId, truth?.queuedRuns]);
      expect(shown?.usage).toEqual(truth?.usage);

      // The next event follows in order: the next run's.
      expect((await runToEnd(clients, worker, "again"))?.status).toBe(RunStatus.COMPLETED);
      await eventually(() => resumed.events.some((e) => e.kind.case === "runChanged" && e.kind.value.status === RunStatus.COMPLETED));
      const resumedSeqs = resumed.events.map((e) => e.seq);
      expect(resumedSeqs).toEqual(resumedSeqs.map((_, i) => seen + 1n + BigInt(i)));
      resume.abort();
      watch.abort();
    } finally {
      await harness.close();
    }
  });
});

describe("a runtime-wide event log that fails while the workers' files still write", () => {
  it("publishes the latest state of the worker whose events were lost, so a resumed watch agrees with GetWorker", async () => {
    const { harness, clients } = await disk.serve();
    try {
      const worker = (await clients.catalog.createWorker({ runtimeId: "rf" })).worker?.ref as WorkerRef;
      const watch = new AbortController();
      const watched = followRuntime(clients, "", watch.signal);
      await eventually(() => workerStates(watched.events, worker.workerId).length > 0);

      runtimeLogFull = true;
      // The run completes (its worker writes), but none of its runtime-wide events can be written.
      expect((await runToEnd(clients, worker, "hello"))?.status).toBe(RunStatus.COMPLETED);
      await expectStoreUnavailable(watched);
      expect(workerStates(watched.events, worker.workerId).map((w) => w.status)).toEqual([WorkerStatus.IDLE]);
      const cursor = lastCursor(watched.events);
      const seen = watched.events.at(-1)?.seq ?? 0n;

      runtimeLogFull = false;
      await eventually(async () => (await clients.management.getRuntime({})).runtime?.status === RuntimeStatus.SERVING);
      const resume = new AbortController();
      const resumed = followRuntime(clients, cursor, resume.signal);
      const truth = (await clients.catalog.getWorker({ worker })).worker;
      expect(truth?.usage?.outputTokens).toBeGreaterThan(0n);
      // Usually the one owed state; but a state published again while the disk still failed (each store
      // probe that passes ends the degraded state) may be written only after it writes again, with the
      // run's later events behind it: real events, in order. Either way the last state is GetWorker's.
      const agrees = (shown: Worker | undefined) =>
        shown?.status === truth?.status &&
        shown?.activeRunId === truth?.activeRunId &&
        shown?.usage?.outputTokens === truth?.usage?.outputTokens;
      await eventually(() => agrees(workerStates(resumed.events, worker.workerId).at(-1)), 5_000, "the worker's latest state");
      const states = workerStates(resumed.events, worker.workerId);
      expect(states.length).toBeLessThanOrEqual(2);
      // Never the same state twice in a row: a state owed is not published again once a later one is written.
      expect(
        states.slice(1).filter((state, i) => state.lastEventSeq === states[i]?.lastEventSeq && state.status === states[i]?.status),
      ).toEqual([]);
      expect(resumed.events.map((e) => e.seq)).toEqual(resumed.events.map((_, i) => seen + 1n + BigInt(i)));
      resume.abort();
      watch.abort();
    } finally {
      await harness.close();
    }
  });
});
