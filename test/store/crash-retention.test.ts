import { clone, equals, fromBinary } from "@bufbuild/protobuf";
import { Http2SessionManager } from "@connectrpc/connect-node";
import { mkdtemp, rm } from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { startCrashChild } from "./crash-child-process.js";
import { BusyPolicy, type WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { RuntimeEventSchema, WorkerEventSchema, type RuntimeEvent, type WorkerEvent } from "../../gen/worker_runtime/v1/events_pb.js";
import { DiagnosticSeverity } from "../../gen/worker_runtime/v1/runtime_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { createFileStore } from "../../src/store/fs/index.js";
import { clientsFor, eventually, makeTransport, type Clients } from "../support/harness.js";

/**
 * SIGKILL while retention prunes: the child's event logs roll a segment
 * every few KiB and keep only the newest RETENTION events, so kills land
 * in segment rolls, seals and pruning as well as in appends. After each
 * kill the data dir is opened directly: it opens without an error, every
 * event log is gap-free from its earliest retained seq to its last, keeps
 * at least RETENTION events (or all), and holds every event a watcher
 * received that is still within retention, unchanged. After each restart
 * new input runs to completion.
 */
const KILLS = 8;
const WORKERS = 2;
const SEGMENT_BYTES = 4 * 1024;
const RETENTION = 150;

const dirs: string[] = [];
afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

describe("file store retention under SIGKILL", () => {
  it(`keeps retained logs gap-free and every received event within retention across ${KILLS} kills`, async () => {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), "wr-crash-retention-"));
    dirs.push(dataDir);
    const workers: WorkerRef[] = [];
    let runtimeId = "";
    let earliestSeen = 1n;
    let receivedCount = 0;
    for (let round = 0; round < KILLS; round++) {
      const child = await startCrashChild(dataDir, [String(SEGMENT_BYTES), String(RETENTION)]);
      const sessions = new Http2SessionManager(`http://${child.address}`);
      const clients = clientsFor(makeTransport("grpc", `http://${child.address}`, sessions));
      if (round === 0) {
        runtimeId = child.runtimeId;
        for (let i = 0; i < WORKERS; i++) {
          const { worker } = await clients.catalog.createWorker({ runtimeId, displayName: `retention-${i}` });
          workers.push(worker!.ref!);
        }
      }
      // Events received this round (from each stream's snapshot on), by seq.
      const received = workers.map(() => new Map<bigint, WorkerEvent>());
      const runtimeReceived = new Map<bigint, RuntimeEvent>();
      const aborts = workers.map((ref, i) => watchWorker(clients, ref, received[i]!));
      aborts.push(watchRuntime(clients, runtimeId, runtimeReceived));
      for (const ref of workers) {
        const { run } = await clients.interaction.sendInput({
          worker: ref,
          input: { text: `check ${round}` },
          busyPolicy: BusyPolicy.ENQUEUE,
        });
        await eventually(
          async () => (await clients.interaction.getRun({ worker: ref, runId: run!.runId })).run?.status === RunStatus.COMPLETED,
          15_000,
          `run of round ${round}`,
        );
      }
      const load = writeLoad(clients, workers);
      await new Promise((resolve) => setTimeout(resolve, 100 + Math.random() * 400));
      child.process.kill("SIGKILL");
      await child.exited;
      load.stop();
      for (const abort of aborts) abort.abort();
      sessions.abort();
      await load.done;
      const earliest = await verifyDataDir(dataDir, workers, received, runtimeReceived, round);
      if (earliest > earliestSeen) earliestSeen = earliest;
      receivedCount += runtimeReceived.size + received.reduce((n, map) => n + map.size, 0);
    }
    // The kills did land among pruned logs and delivered events.
    expect(earliestSeen, "retention pruned segments").toBeGreaterThan(1n);
    expect(receivedCount).toBeGreaterThan(KILLS * 10);
  }, 300_000);
});

async function verifyDataDir(
  dataDir: string,
  workers: WorkerRef[],
  received: Map<bigint, WorkerEvent>[],
  runtimeReceived: Map<bigint, RuntimeEvent>,
  round: number,
): Promise<bigint> {
  const store = createFileStore({ dataDir, segmentBytes: SEGMENT_BYTES, eventRetention: RETENTION });
  const opened = await store.open({ generateRuntimeId: () => "unused" });
  try {
    expect(
      opened.diagnostics.filter((d) => d.severity !== DiagnosticSeverity.WARNING),
      `round ${round}`,
    ).toEqual([]);
    for (const [i, ref] of workers.entries()) {
      const restored = opened.workers.find((w) => w.record.worker.ref?.workerId === ref.workerId);
      expect(restored?.quarantined).toBeUndefined();
      const last = restored!.lastEventSeq;
      const seen = received[i]!;
      const stored = await readAll(store.earliestEventSeq(ref.workerId), last, (after, limit) =>
        store.readEvents(ref.workerId, after, limit),
      );
      checkLog(`round ${round} worker ${ref.workerId}`, stored, store.earliestEventSeq(ref.workerId), last, [...seen.keys()]);
      for (const { seq, bytes } of stored) {
        const event = seen.get(seq);
        if (event) expect(sameWorkerEvent(fromBinary(WorkerEventSchema, bytes), event), `worker event ${seq}`).toBe(true);
      }
    }
    const last = opened.lastRuntimeEventSeq;
    const earliest = store.earliestRuntimeEventSeq();
    const stored = await readAll(earliest, last, (after, limit) => store.readRuntimeEvents(after, limit));
    checkLog(`round ${round} runtime`, stored, earliest, last, [...runtimeReceived.keys()]);
    for (const { seq, bytes } of stored) {
      const event = runtimeReceived.get(seq);
      if (event) expect(sameRuntimeEvent(fromBinary(RuntimeEventSchema, bytes), event), `runtime event ${seq}`).toBe(true);
    }
    let latestEarliest = earliest;
    for (const ref of workers) {
      const seq = store.earliestEventSeq(ref.workerId);
      if (seq > latestEarliest) latestEarliest = seq;
    }
    return latestEarliest;
  } finally {
    await store.close();
  }
}

/** Gap-free from earliest to last, at least RETENTION of them (or all), and nothing received is past the end. */
function checkLog(what: string, stored: Array<{ seq: bigint }>, earliest: bigint, last: bigint, receivedSeqs: bigint[]): void {
  expect(
    stored.map((e) => e.seq),
    what,
  ).toEqual(Array.from({ length: Number(last - earliest + 1n) }, (_, k) => earliest + BigInt(k)));
  expect(Number(last - earliest + 1n), `${what}: retained`).toBeGreaterThanOrEqual(Math.min(RETENTION, Number(last)));
  for (const seq of receivedSeqs) expect(seq, `${what}: received event ${seq} is stored`).toBeLessThanOrEqual(last);
}

async function readAll<T extends { seq: bigint }>(
  earliest: bigint,
  last: bigint,
  read: (afterSeq: bigint, limit: number) => Promise<T[]>,
): Promise<T[]> {
  const all: T[] = [];
  for (let after = earliest - 1n; after < last; ) {
    const page = await read(after, 500);
    if (page.length === 0) break;
    all.push(...page);
    after = page.at(-1)!.seq;
  }
  return all;
}

/** Equal apart from the cursor, which is derived from seq at delivery. */
function sameWorkerEvent(stored: WorkerEvent, received: WorkerEvent): boolean {
  return equals(
    WorkerEventSchema,
    { ...clone(WorkerEventSchema, stored), cursor: "" },
    { ...clone(WorkerEventSchema, received), cursor: "" },
  );
}

/** Equal apart from the cursor. */
function sameRuntimeEvent(stored: RuntimeEvent, received: RuntimeEvent): boolean {
  return equals(
    RuntimeEventSchema,
    { ...clone(RuntimeEventSchema, stored), cursor: "" },
    { ...clone(RuntimeEventSchema, received), cursor: "" },
  );
}

/** Collects the durable events a worker watcher receives, from its snapshot on. */
function watchWorker(clients: Clients, worker: WorkerRef, received: Map<bigint, WorkerEvent>): AbortController {
  const abort = new AbortController();
  void (async () => {
    try {
      for await (const message of clients.observation.watchWorker({ worker }, { signal: abort.signal })) {
        for (const event of message.events) if (event.seq !== 0n) received.set(event.seq, event);
      }
    } catch {
      // The child was killed or the watch aborted.
    }
  })();
  return abort;
}

/** Collects the events a runtime watcher receives, from its snapshot on. */
function watchRuntime(clients: Clients, runtimeId: string, received: Map<bigint, RuntimeEvent>): AbortController {
  const abort = new AbortController();
  void (async () => {
    try {
      for await (const message of clients.observation.watchRuntime({ runtimeId }, { signal: abort.signal })) {
        for (const event of message.events) received.set(event.seq, event);
      }
    } catch {
      // The child was killed or the watch aborted.
    }
  })();
  return abort;
}

/** Sends input to every worker in a loop until stopped. */
function writeLoad(clients: Clients, workers: WorkerRef[]): { stop: () => void; done: Promise<void> } {
  let stopped = false;
  const done = Promise.all(
    workers.map(async (worker, i) => {
      for (let n = 0; !stopped; n++) {
        try {
          await clients.interaction.sendInput({ worker, input: { text: `load ${i}-${n}` }, busyPolicy: BusyPolicy.ENQUEUE });
        } catch {
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
      }
    }),
  ).then(() => undefined);
  return { stop: () => (stopped = true), done };
}
