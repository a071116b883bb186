import { create } from "@bufbuild/protobuf";
import { mkdtemp, rm, unlink } from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { WorkerRefSchema } from "../gen/worker_runtime/v1/common_pb.js";
import { RunSchema, RunStatus } from "../gen/worker_runtime/v1/run_pb.js";
import { AssistantMessageSchema, TranscriptEntrySchema, type TranscriptEntry } from "../gen/worker_runtime/v1/transcript_pb.js";
import { InputSchema, WorkerSchema, WorkerStatus } from "../gen/worker_runtime/v1/worker_pb.js";
import type { StoredEvent, WorkerRecord } from "../src/runtime/index.js";
import { createFileStore, type FileStore } from "../src/store/fs/index.js";

/**
 * File store figures: group commit against one fsync per event,
 * CreateWorker's durable write against one fsync'd append,
 * tail reads from a 1,000,000-entry transcript against a 1,000-entry one,
 * start-up time / memory with 10,000 workers in one data dir, and opening
 * a worker with 10,000 runs through its run index checkpoint against
 * rebuilding the index from its whole run log, and the longest turn of the
 * event loop while its checkpoint is written.
 */
export async function run(): Promise<void> {
  const root = await mkdtemp(path.join(os.tmpdir(), "wr-bench-store-"));
  try {
    await benchGroupCommit(path.join(root, "append"));
    await benchCreateWorker(path.join(root, "create"));
    await benchTailRead(path.join(root, "tail"));
    await benchManyWorkers(path.join(root, "workers"));
    await benchRunIndexOpen(path.join(root, "runs"));
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

async function open(dataDir: string): Promise<FileStore> {
  const store = createFileStore({ dataDir });
  await store.open({ generateRuntimeId: () => "rt-bench" });
  return store;
}

function record(workerId: string): WorkerRecord {
  return {
    worker: create(WorkerSchema, {
      ref: create(WorkerRefSchema, { runtimeId: "rt-bench", workerId }),
      status: WorkerStatus.IDLE,
    }),
    createRequestId: "",
    createFingerprint: "",
  };
}

const EVENT_BYTES = Buffer.alloc(120, 7);
const event = (seq: number): StoredEvent => ({ seq: BigInt(seq), bytes: EVENT_BYTES });

async function benchGroupCommit(dataDir: string): Promise<void> {
  const store = await open(dataDir);
  await store.putWorker(record("serial"));
  await store.putWorker(record("grouped"));

  // Baseline: each event awaited alone, so each costs its own fdatasync.
  let serial = 0;
  const serialStart = performance.now();
  while (serial < 2_000 && performance.now() - serialStart < 3_000) {
    serial++;
    await store.appendEvents("serial", [event(serial)]);
  }
  const serialRate = serial / ((performance.now() - serialStart) / 1000);

  // Group commit: many single-event appends in flight, as when many runs emit at once.
  const total = 100_000;
  const groupedStart = performance.now();
  const pending: Promise<void>[] = [];
  for (let seq = 1; seq <= total; seq++) pending.push(store.appendEvents("grouped", [event(seq)]));
  await Promise.all(pending);
  const groupedRate = total / ((performance.now() - groupedStart) / 1000);
  await store.close();

  print("store.append.group_commit", groupedRate, "events/s", groupedRate / serialRate, ">=20");
  print("store.append.fsync_per_event", serialRate, "events/s");
}

/**
 * A worker's creation is several fsyncs in a row (its files, its staging
 * dir, the workers dir); the ratio says how many single-event appends one
 * creation costs, measured on the same disk in the same run.
 */
async function benchCreateWorker(dataDir: string): Promise<void> {
  const store = await open(dataDir);
  await store.putWorker(record("appender"));
  const timeEach = async (count: number, write: (i: number) => Promise<void>): Promise<number> => {
    const start = performance.now();
    for (let i = 0; i < count; i++) await write(i);
    return (performance.now() - start) / count;
  };
  const appendMs = await timeEach(200, (i) => store.appendEvents("appender", [event(i + 1)]));
  const createMs = await timeEach(200, (i) => store.putWorker(record(`created-${i}`)));
  await store.close();
  print("store.create_worker", createMs, "ms", createMs / appendMs);
  print("store.create_worker.append_baseline", appendMs, "ms");
}

function entry(seq: number): TranscriptEntry {
  return create(TranscriptEntrySchema, {
    seq: BigInt(seq),
    runId: "run-bench",
    content: {
      case: "assistantMessage",
      value: create(AssistantMessageSchema, { text: `assistant reply number ${seq}, a sentence of typical size.` }),
    },
  });
}

async function fillTranscript(dataDir: string, count: number): Promise<void> {
  const store = await open(dataDir);
  await store.putWorker(record("w"));
  const batch = 5_000;
  for (let from = 1; from <= count; from += batch) {
    const entries: TranscriptEntry[] = [];
    for (let seq = from; seq < from + batch && seq <= count; seq++) entries.push(entry(seq));
    await store.appendTranscript("w", entries);
  }
  await store.close();
}

async function tailReadMicros(dataDir: string, count: number): Promise<number> {
  const store = await open(dataDir);
  const rounds = 300;
  const samples: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const start = performance.now();
    const tail = await store.readTranscript("w", { kind: "before", beforeSeq: BigInt(count + 1) }, 100);
    samples.push(performance.now() - start);
    if (tail.length !== 100 || tail.at(-1)?.seq !== BigInt(count)) throw new Error("tail read returned wrong entries");
  }
  await store.close();
  samples.sort((a, b) => a - b);
  return (samples[Math.floor(rounds / 2)] ?? 0) * 1000;
}

async function benchTailRead(dataDir: string): Promise<void> {
  await fillTranscript(path.join(dataDir, "small"), 1_000);
  await fillTranscript(path.join(dataDir, "large"), 1_000_000);
  // Warm up code paths once, then measure both in the same state.
  await tailReadMicros(path.join(dataDir, "small"), 1_000);
  const small = await tailReadMicros(path.join(dataDir, "small"), 1_000);
  const large = await tailReadMicros(path.join(dataDir, "large"), 1_000_000);
  print("store.transcript.tail100_1m", large, "us", large / small, "<=2");
  print("store.transcript.tail100_1k", small, "us");
}

async function benchManyWorkers(dataDir: string): Promise<void> {
  const count = 10_000;
  const store = await open(dataDir);
  const lanes = 64;
  let next = 0;
  const fill = async (): Promise<void> => {
    while (next < count) {
      const id = `worker-${next++}`;
      await store.putWorker(record(id));
      await Promise.all([
        store.appendTranscript(id, [entry(1), entry(2)]),
        store.appendEvents(id, [event(1), event(2), event(3)]),
        store.putRun(id, create(RunSchema, { runId: `${id}-run-1`, status: RunStatus.COMPLETED }), { fingerprint: "" }),
      ]);
    }
  };
  await Promise.all(Array.from({ length: lanes }, fill));
  await store.close();

  globalThis.gc?.();
  const rssBefore = process.memoryUsage().rss;
  const start = performance.now();
  const reopened = createFileStore({ dataDir });
  const opened = await reopened.open({ generateRuntimeId: () => "rt-bench" });
  const openMs = performance.now() - start;
  if (opened.workers.length !== count) throw new Error(`expected ${count} workers, got ${opened.workers.length}`);
  const rssAfter = process.memoryUsage().rss;
  print("store.workers_10k.open", openMs, "ms");
  print("store.workers_10k.rss", rssAfter / 2 ** 20, "MiB");
  print("store.workers_10k.rss_growth_on_open", Math.max(0, rssAfter - rssBefore) / 2 ** 20, "MiB");
  await reopened.close();
}

async function benchRunIndexOpen(dataDir: string): Promise<void> {
  const runs = 10_000;
  const store = await open(dataDir);
  await store.putWorker(record("w"));
  const input = create(InputSchema, { text: "x".repeat(1024) });
  for (let from = 1; from <= runs; from += 200) {
    const ids = Array.from({ length: Math.min(200, runs - from + 1) }, (_, i) => `run-${from + i}`);
    for (const status of [RunStatus.RUNNING, RunStatus.COMPLETED]) {
      await Promise.all(ids.map((runId) => store.putRun("w", create(RunSchema, { runId, status, input }), { fingerprint: "" })));
    }
  }
  await store.close();
  const checkpoint = path.join(dataDir, "workers", "w", "runs", "run-index.checkpoint");
  // Each open is closed again; a close after the full scan writes the checkpoint back.
  const openMs = async (withCheckpoint: boolean): Promise<{ ms: number; bytes: number }> => {
    if (!withCheckpoint) await unlink(checkpoint);
    const start = performance.now();
    const reopened = await open(dataDir);
    const ms = performance.now() - start;
    const bytes = reopened.stats.bytesRead;
    await reopened.close();
    return { ms, bytes };
  };
  const median = async (withCheckpoint: boolean) => {
    const samples = [];
    for (let i = 0; i < 5; i++) samples.push(await openMs(withCheckpoint));
    samples.sort((a, b) => a.ms - b.ms);
    return samples[2] ?? { ms: 0, bytes: 0 };
  };
  await openMs(true);
  const full = await median(false);
  const checkpointed = await median(true);
  print("store.runs_10k.open_checkpoint", checkpointed.ms, "ms", checkpointed.ms / full.ms, "<=0.5");
  print("store.runs_10k.open_full_scan", full.ms, "ms");
  print("store.runs_10k.open_bytes_read", checkpointed.bytes / 2 ** 20, "MiB", checkpointed.bytes / full.bytes);

  // The checkpoint is built a frame at a time: the event loop's longest turn
  // while close writes it, against the whole close (median of 5).
  const blocks = [];
  for (let i = 0; i < 5; i++) {
    await unlink(checkpoint);
    const reopened = await open(dataDir);
    let longest = 0;
    let last = performance.now();
    let ticking = true;
    const tick = () => {
      const now = performance.now();
      longest = Math.max(longest, now - last);
      last = now;
      if (ticking) setImmediate(tick);
    };
    setImmediate(tick);
    const start = performance.now();
    await reopened.close();
    const closeMs = performance.now() - start;
    ticking = false;
    blocks.push({ longest, closeMs });
  }
  blocks.sort((a, b) => a.longest - b.longest);
  const block = blocks[2] ?? { longest: 0, closeMs: 1 };
  print("store.runs_10k.checkpoint_longest_turn", block.longest, "ms", block.longest / block.closeMs, "<=0.5");
}

function print(figure: string, value: number, unit: string, ratio?: number, target?: string): void {
  const parts = [figure, `${formatNumber(value)} ${unit}`];
  if (ratio !== undefined) parts.push(`ratio=${ratio.toFixed(2)}`);
  if (target !== undefined) parts.push(`target=${target}`);
  console.log(parts.join("  "));
}

function formatNumber(value: number): string {
  return value >= 100 ? value.toFixed(0) : value.toFixed(2);
}
