import { clone, create, equals, fromBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
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
import { cursorAt, runtimeCursor } from "../support/cursors.js";
import { clientsFor, eventually, makeTransport, type Clients } from "../support/harness.js";

/**
 * SIGKILL crash test (issue 3): a runtime child under write load (several
 * workers with streaming runs, a WatchWorker watcher on each and one
 * WatchRuntime watcher) is killed at random moments, 32 times in a row.
 * After each kill the data dir is opened directly: every durable event any
 * watcher received (worker and runtime-wide) is present, unchanged, in a
 * gap-free sequence, and every run a runtime event announced is stored in
 * at least the state announced. After each restart: a replay of the runtime
 * stream from the start returns what the runtime watcher received, runs
 * caught in flight are INTERRUPTED, watchers resume from their cursors with
 * no gap and no duplicate, and new input runs to completion.
 */
const KILLS = 32;
const WORKERS = 3;
const UNFINISHED = new Set([RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.AWAITING_APPROVAL]);

interface Watched {
  ref: WorkerRef;
  cursor: string;
  lastSeq: bigint;
  /** Every durable event a watcher received, by seq. */
  received: Map<bigint, WorkerEvent>;
  /** Latest status seen per run. */
  runs: Map<string, RunStatus>;
}

/** The WatchRuntime watcher: same cursor rules as the worker watchers. */
interface RuntimeWatched {
  cursor: string;
  lastSeq: bigint;
  /** Every runtime event the watcher received, by seq. */
  received: Map<bigint, RuntimeEvent>;
  /** Latest run state announced by a runChanged runtime event, per run id. */
  runs: Map<string, { workerId: string; status: RunStatus; seq: bigint }>;
}

const TERMINAL = new Set([RunStatus.COMPLETED, RunStatus.CANCELLED, RunStatus.FAILED, RunStatus.INTERRUPTED]);

const dirs: string[] = [];
afterAll(async () => {
  if (process.env["KEEP_CRASH_DIR"]) console.log("kept", dirs);
  else for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

describe("file store under SIGKILL", () => {
  it(`keeps every received event, interrupts in-flight runs and accepts input across ${KILLS} kills`, async () => {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), "wr-crash-"));
    dirs.push(dataDir);
    const watched: Watched[] = [];
    // Set to the runtime stream's cursor at seq 0 in round 0: the watcher must see every event.
    const runtimeWatched: RuntimeWatched = { cursor: "", lastSeq: 0n, received: new Map(), runs: new Map() };
    const problems: string[] = [];
    let interruptedSeen = 0;
    let runtimeId = "";

    for (let round = 0; round < KILLS; round++) {
      const child = await startCrashChild(dataDir);
      const sessions = new Http2SessionManager(`http://${child.address}`);
      const clients = clientsFor(makeTransport("grpc", `http://${child.address}`, sessions));
      if (round === 0) {
        runtimeId = child.runtimeId;
        runtimeWatched.cursor = cursorAt(await runtimeCursor(clients, runtimeId), 0n);
        for (let i = 0; i < WORKERS; i++) {
          const { worker } = await clients.catalog.createWorker({ runtimeId, displayName: `crash-${i}` });
          watched.push({ ref: worker!.ref!, cursor: "", lastSeq: 0n, received: new Map(), runs: new Map() });
        }
      } else {
        expect(child.runtimeId).toBe(runtimeId);
        await verifyRuntimeReplay(clients, runtimeId, runtimeWatched);
        for (const w of watched) {
          for (const [runId, status] of w.runs) {
            if (!UNFINISHED.has(status)) continue;
            const run = await clients.interaction.getRun({ worker: w.ref, runId }).then(
              (response) => response.run,
              (error: unknown) => problems.push(`round ${round}: run ${runId} seen ${RunStatus[status]}: ${String(error)}`),
            );
            if (typeof run !== "object") continue;
            expect(UNFINISHED.has(run.status), `run ${runId} still ${RunStatus[run.status]}`).toBe(false);
            if (run.status === RunStatus.INTERRUPTED) interruptedSeen++;
          }
        }
      }

      const aborts = watched.map((w) => watch(clients, w, problems));
      aborts.push(watchRuntime(clients, runtimeId, runtimeWatched, problems));
      // New input works after every restart: one run per worker completes.
      for (const w of watched) {
        const { run } = await clients.interaction.sendInput({
          worker: w.ref,
          input: { text: `round ${round} check` },
          busyPolicy: BusyPolicy.ENQUEUE,
        });
        await eventually(() => w.runs.get(run!.runId) === RunStatus.COMPLETED, 15_000, `run of round ${round}`);
        // The runtime watcher, resumed from its cursor, follows the live stream too.
        await eventually(
          () => runtimeWatched.runs.get(run!.runId)?.status === RunStatus.COMPLETED,
          15_000,
          `runtime event for the run of round ${round}`,
        );
      }
      // Write load, then a kill at a random moment.
      const load = writeLoad(clients, watched);
      await new Promise((resolve) => setTimeout(resolve, 50 + Math.random() * 250));
      child.process.kill("SIGKILL");
      await child.exited;
      load.stop();
      for (const abort of aborts) abort.abort();
      sessions.abort();
      await load.done;

      await verifyDataDir(dataDir, watched, runtimeWatched);
      expect(problems).toEqual([]);
    }
    expect(interruptedSeen).toBeGreaterThan(0);
    expect([...runtimeWatched.runs.values()].some((r) => r.status === RunStatus.INTERRUPTED)).toBe(true);
  }, 600_000);
});

/** Watches one worker from its last cursor, checking exactly-once order. */
function watch(clients: Clients, w: Watched, problems: string[]): AbortController {
  const abort = new AbortController();
  void (async () => {
    try {
      const stream = clients.observation.watchWorker({ worker: w.ref, afterCursor: w.cursor }, { signal: abort.signal });
      for await (const message of stream) {
        // A watch without a cursor starts at the snapshot; later events follow it.
        if (message.snapshot && w.cursor === "") {
          w.lastSeq = message.snapshot.worker?.lastEventSeq ?? 0n;
          w.cursor = message.snapshot.cursor;
        }
        for (const event of message.events) {
          if (event.seq === 0n) continue;
          if (event.seq !== w.lastSeq + 1n) problems.push(`worker event ${event.seq} after ${w.lastSeq}`);
          w.lastSeq = event.seq;
          w.cursor = event.cursor;
          w.received.set(event.seq, event);
          if (event.kind.case === "runChanged") w.runs.set(event.kind.value.runId, event.kind.value.status);
        }
      }
    } catch {
      // The child was killed or the watch aborted: both end the stream.
    }
  })();
  return abort;
}

/** Watches the runtime-wide stream from its last cursor, checking exactly-once order. */
function watchRuntime(clients: Clients, runtimeId: string, rw: RuntimeWatched, problems: string[]): AbortController {
  const abort = new AbortController();
  void (async () => {
    try {
      const stream = clients.observation.watchRuntime({ runtimeId, afterCursor: rw.cursor }, { signal: abort.signal });
      for await (const message of stream) {
        for (const event of message.events) {
          if (event.seq !== rw.lastSeq + 1n) problems.push(`runtime event ${event.seq} after ${rw.lastSeq}`);
          rw.lastSeq = event.seq;
          rw.cursor = event.cursor;
          rw.received.set(event.seq, event);
          if (event.kind.case === "runChanged") {
            const run = event.kind.value;
            rw.runs.set(run.runId, { workerId: run.worker?.workerId ?? "", status: run.status, seq: event.seq });
          }
        }
      }
    } catch (error) {
      // The child was killed or the watch aborted: both end the stream. A refused cursor
      // (ahead of the restarted stream: events lost; or expired) is a finding.
      const code = ConnectError.from(error).code;
      if (code === Code.InvalidArgument || code === Code.OutOfRange) {
        problems.push(`runtime watch from ${rw.cursor}: ${String(error)}`);
      }
    }
  })();
  return abort;
}

/**
 * After a restart, replays the runtime stream from the start: it returns
 * every event the runtime watcher received, same seq, same content, in a
 * gap-free sequence from the earliest retained event (1: nothing is pruned).
 */
async function verifyRuntimeReplay(clients: Clients, runtimeId: string, rw: RuntimeWatched): Promise<void> {
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), 15_000);
  let expected = 1n;
  try {
    if (rw.lastSeq === 0n) return;
    const stream = clients.observation.watchRuntime({ runtimeId, afterCursor: cursorAt(rw.cursor, 0n) }, { signal: abort.signal });
    outer: for await (const message of stream) {
      for (const event of message.events) {
        expect(event.seq, "replayed runtime seqs are gap-free from 1").toBe(expected);
        const seen = rw.received.get(event.seq);
        if (event.seq <= rw.lastSeq) {
          expect(seen, `runtime event ${event.seq} was received`).toBeDefined();
          expect(event.kind.case).toBe(seen!.kind.case);
          expect(sameRuntimeEvent(event, seen!), `runtime event ${event.seq} replays unchanged`).toBe(true);
        }
        expected++;
        if (event.seq >= rw.lastSeq) break outer;
      }
    }
  } finally {
    clearTimeout(timer);
    abort.abort();
  }
  expect(expected - 1n, "replay reached the watcher's last event").toBeGreaterThanOrEqual(rw.lastSeq);
}

/** Sends input to every worker in a loop until stopped. */
function writeLoad(clients: Clients, watched: Watched[]): { stop: () => void; done: Promise<void> } {
  let stopped = false;
  const done = Promise.all(
    watched.map(async (w, i) => {
      for (let n = 0; !stopped; n++) {
        try {
          await clients.interaction.sendInput({
            worker: w.ref,
            input: { text: `load ${i}-${n}` },
            busyPolicy: BusyPolicy.ENQUEUE,
          });
        } catch {
          await new Promise((resolve) => setTimeout(resolve, 5));
        }
      }
    }),
  ).then(() => undefined);
  return { stop: () => (stopped = true), done };
}

/** Opens the killed runtime's data dir directly and checks what watchers saw. */
async function verifyDataDir(dataDir: string, watched: Watched[], rw: RuntimeWatched): Promise<void> {
  const store = createFileStore({ dataDir, segmentBytes: 32 * 1024, eventRetention: 1_000_000 });
  const opened = await store.open({ generateRuntimeId: () => "unused" });
  try {
    expect(opened.diagnostics.filter((d) => d.severity !== DiagnosticSeverity.WARNING)).toEqual([]);
    for (const w of watched) {
      const workerId = w.ref.workerId;
      const restored = opened.workers.find((r) => r.record.worker.ref?.workerId === workerId);
      expect(restored?.quarantined).toBeUndefined();
      expect(restored!.lastEventSeq).toBeGreaterThanOrEqual(w.lastSeq);
      let expected = store.earliestEventSeq(workerId);
      expect(expected).toBe(1n);
      for (;;) {
        const page = await store.readEvents(workerId, expected - 1n, 2_000);
        if (page.length === 0) break;
        for (const stored of page) {
          expect(stored.seq).toBe(expected);
          const seen = w.received.get(stored.seq);
          if (seen) expect(sameEvent(fromBinary(WorkerEventSchema, stored.bytes), seen)).toBe(true);
          expected++;
        }
      }
      expect(expected - 1n).toBe(restored!.lastEventSeq);
    }

    // The runtime-wide log: gap-free from 1, holding every event the runtime watcher received.
    expect(opened.lastRuntimeEventSeq).toBeGreaterThanOrEqual(rw.lastSeq);
    expect(store.earliestRuntimeEventSeq()).toBe(1n);
    let expected = 1n;
    for (;;) {
      const page = await store.readRuntimeEvents(expected - 1n, 2_000);
      if (page.length === 0) break;
      for (const stored of page) {
        expect(stored.seq).toBe(expected);
        const seen = rw.received.get(stored.seq);
        if (seen) expect(sameRuntimeEvent(fromBinary(RuntimeEventSchema, stored.bytes), seen), `runtime event ${stored.seq}`).toBe(true);
        expected++;
      }
    }
    expect(expected - 1n).toBe(opened.lastRuntimeEventSeq);
    // A runtime event that was received describes stored state: the run exists and is
    // at least as far along as announced (a terminal state exactly).
    for (const [runId, announced] of rw.runs) {
      const stored = await store.getRun(announced.workerId, runId);
      const what = `run ${runId} announced ${RunStatus[announced.status]} by runtime event ${announced.seq}`;
      expect(stored, `${what}: not stored`).toBeDefined();
      if (TERMINAL.has(announced.status)) expect(RunStatus[stored!.status], what).toBe(RunStatus[announced.status]);
      else expect(stored!.status, `${what}: stored ${RunStatus[stored!.status]}`).toBeGreaterThanOrEqual(announced.status);
    }
  } finally {
    await store.close();
  }
}

/** Equal apart from the cursor (see {@link sameEvent}). */
function sameRuntimeEvent(stored: RuntimeEvent, received: RuntimeEvent): boolean {
  const a = clone(RuntimeEventSchema, stored);
  const b = clone(RuntimeEventSchema, received);
  a.cursor = "";
  b.cursor = "";
  return equals(RuntimeEventSchema, a, b);
}

/** Equal apart from the cursor, which is derived from seq at delivery. */
function sameEvent(stored: WorkerEvent, received: WorkerEvent): boolean {
  const a = clone(WorkerEventSchema, stored);
  const b = clone(WorkerEventSchema, received);
  a.cursor = "";
  b.cursor = "";
  return equals(WorkerEventSchema, a, b) || equals(WorkerEventSchema, a, create(WorkerEventSchema, b));
}
