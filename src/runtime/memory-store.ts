import { cloneMessage } from "./message-clone.js";
import { type ConfigBundle, ConfigBundleSchema } from "../../gen/worker_runtime/v1/profile_pb.js";
import { randomBytes } from "node:crypto";
import type { Run } from "../../gen/worker_runtime/v1/run_pb.js";
import type { TranscriptEntry } from "../../gen/worker_runtime/v1/transcript_pb.js";
import {
  StoreSequenceError,
  StoreWriteError,
  type OpenedStore,
  type RuntimeStore,
  type StoreOpenInit,
  type StoredEvent,
  type StoredRun,
  type TranscriptRange,
  type WorkerRecord,
} from "./store.js";

/** Options for {@link createMemoryStore}. */
export interface MemoryStoreOptions {
  /**
   * Durable events kept per log for resuming watches; older ones are
   * dropped. Unset: the runtime's `limits.eventRetention` (given at open),
   * else 100,000; set, it wins over the runtime's limit.
   */
  eventRetention?: number;
  /**
   * Encoded bytes of durable events kept per log; older ones are dropped
   * past this too. Unset: the runtime's `limits.eventRetentionBytes`, else
   * 64 MiB; set, it wins over the runtime's limit.
   */
  eventRetentionBytes?: number;
}

/** How much of each event log a memory store keeps. */
interface Retention {
  events: number;
  bytes: number;
}

/**
 * The in-memory store for embedded runtimes and tests: same semantics as
 * the file store (ordered, gap-free, bounded event retention), nothing
 * survives the process.
 */
export function createMemoryStore(options: MemoryStoreOptions = {}): RuntimeStore {
  return new MemoryStore(options);
}

/**
 * A retained window of a gap-free event log: the newest events within
 * both the count and the byte bound (always the newest one). An event can
 * carry a run's whole input, so a count alone let a few hundred large runs
 * hold gigabytes; a cursor before the window gets CURSOR_EXPIRED with the
 * earliest cursor, never a gap.
 */
class EventWindow {
  /** The log from `head` on; the slots before it are dropped events, cleared until compacted away. */
  private readonly events: (StoredEvent | undefined)[] = [];
  private head = 0;
  /** Encoded bytes of the retained events (from `head`). */
  private bytes = 0;
  lastSeq = 0n;

  constructor(private readonly retention: Retention) {}

  append(batch: StoredEvent[]): void {
    checkContinues(batch, this.lastSeq);
    for (const event of batch) {
      this.events.push(event);
      this.bytes += event.bytes.byteLength;
      this.lastSeq = event.seq;
    }
    const { events, bytes } = this.retention;
    while (this.events.length - this.head > 1 && (this.events.length - this.head > events || this.bytes > bytes)) {
      this.bytes -= (this.events[this.head] as StoredEvent).bytes.byteLength;
      // Released at once, not at the next compaction: the window's memory is what the bounds are for.
      this.events[this.head] = undefined;
      this.head++;
    }
    // Compact now and then so the cleared slots go too.
    if (this.head > 4096 && this.head * 2 > this.events.length) {
      this.events.splice(0, this.head);
      this.head = 0;
    }
  }

  earliest(): bigint {
    const first = this.events[this.head];
    return first === undefined ? this.lastSeq + 1n : first.seq;
  }

  read(afterSeq: bigint, limit: number): StoredEvent[] {
    const first = this.events[this.head];
    if (first === undefined) return [];
    const start = this.head + Math.max(0, Number(afterSeq - first.seq + 1n));
    // Every slot from `head` on holds an event.
    return this.events.slice(start, start + limit) as StoredEvent[];
  }
}

interface WorkerData {
  record: WorkerRecord;
  transcript: TranscriptEntry[];
  events: EventWindow;
  runs: Run[];
  runIndex: Map<string, number>;
}

class MemoryStore implements RuntimeStore {
  readonly kind = "memory" as const;
  private readonly workers = new Map<string, WorkerData>();
  private readonly runtimeEvents: EventWindow;
  /** Each memory store is its own data: cursors of another one are foreign. */
  private readonly storeId = randomBytes(16).toString("hex");
  private readonly bundles = new Map<string, ConfigBundle>();

  /** Shared by every event window; set at open from the runtime's limits unless the options set it. */
  private readonly eventRetention: Retention = { events: 100_000, bytes: 64 * 1024 * 1024 };

  constructor(private readonly options: MemoryStoreOptions) {
    this.runtimeEvents = new EventWindow(this.eventRetention);
  }

  async open(init: StoreOpenInit): Promise<OpenedStore> {
    this.eventRetention.events = this.options.eventRetention ?? init.eventRetention?.events ?? this.eventRetention.events;
    this.eventRetention.bytes = this.options.eventRetentionBytes ?? init.eventRetention?.bytes ?? this.eventRetention.bytes;
    return {
      runtimeId: init.runtimeId ?? init.generateRuntimeId(),
      storeId: this.storeId,
      workers: [],
      lastRuntimeEventSeq: 0n,
      diagnostics: [],
      configBundles: [...this.bundles.values()].map((bundle) => cloneMessage(ConfigBundleSchema, bundle)),
    };
  }

  async putConfigBundle(bundle: ConfigBundle): Promise<void> {
    this.bundles.set(bundle.bundleId, cloneMessage(ConfigBundleSchema, bundle));
  }

  async putWorker(record: WorkerRecord): Promise<void> {
    const existing = this.workers.get(record.worker.ref?.workerId ?? "");
    if (existing) {
      existing.record = record;
      return;
    }
    this.workers.set(record.worker.ref?.workerId ?? "", {
      record,
      transcript: [],
      events: new EventWindow(this.eventRetention),
      runs: [],
      runIndex: new Map(),
    });
  }

  async deleteWorker(workerId: string): Promise<void> {
    this.workers.delete(workerId);
  }

  /** Nothing survives a restart here, so the request fingerprint (PutRunInit) is not kept. */
  async putRun(workerId: string, run: Run): Promise<void> {
    const data = this.writable(workerId);
    const index = data.runIndex.get(run.runId);
    if (index === undefined) {
      data.runIndex.set(run.runId, data.runs.length);
      data.runs.push(run);
    } else {
      data.runs[index] = run;
    }
  }

  async getRun(workerId: string, runId: string): Promise<Run | undefined> {
    const data = this.workers.get(workerId);
    const index = data?.runIndex.get(runId);
    return index === undefined ? undefined : data?.runs[index];
  }

  async listRuns(workerId: string, beforeOrdinal: number | undefined, limit: number): Promise<StoredRun[]> {
    const runs = this.data(workerId).runs;
    const end = Math.min(beforeOrdinal === undefined ? runs.length : beforeOrdinal - 1, runs.length);
    const page: StoredRun[] = [];
    for (let i = end - 1; i >= 0 && page.length < limit; i--) {
      const run = runs[i];
      if (run) page.push({ ordinal: i + 1, run });
    }
    return page;
  }

  async appendTranscript(workerId: string, entries: TranscriptEntry[]): Promise<void> {
    const transcript = this.writable(workerId).transcript;
    checkContinues(entries, BigInt(transcript.length));
    for (const entry of entries) transcript.push(entry);
  }

  async readTranscript(workerId: string, range: TranscriptRange, limit: number): Promise<TranscriptEntry[]> {
    const transcript = this.data(workerId).transcript;
    if (range.kind === "after") {
      const start = Number(range.afterSeq);
      return transcript.slice(start, start + limit);
    }
    const end = Math.min(Number(range.beforeSeq) - 1, transcript.length);
    return transcript.slice(Math.max(0, end - limit), Math.max(0, end));
  }

  async appendEvents(workerId: string, events: StoredEvent[]): Promise<void> {
    this.writable(workerId).events.append(events);
  }

  async readEvents(workerId: string, afterSeq: bigint, limit: number): Promise<StoredEvent[]> {
    return this.data(workerId).events.read(afterSeq, limit);
  }

  earliestEventSeq(workerId: string): bigint {
    return this.data(workerId).events.earliest();
  }

  async appendRuntimeEvents(events: StoredEvent[]): Promise<void> {
    this.runtimeEvents.append(events);
  }

  async readRuntimeEvents(afterSeq: bigint, limit: number): Promise<StoredEvent[]> {
    return this.runtimeEvents.read(afterSeq, limit);
  }

  earliestRuntimeEventSeq(): bigint {
    return this.runtimeEvents.earliest();
  }

  async close(): Promise<void> {}

  private data(workerId: string): WorkerData {
    const data = this.workers.get(workerId);
    if (!data) throw new Error(`memory store: unknown worker ${workerId}`);
    return data;
  }

  /** Like {@link data}, but an unknown (e.g. deleted) worker is the contract's write failure. */
  private writable(workerId: string): WorkerData {
    const data = this.workers.get(workerId);
    if (!data) throw new StoreWriteError(`memory store: unknown worker ${workerId}`);
    return data;
  }
}

/**
 * Throws StoreSequenceError unless `batch` continues a log whose last seq is
 * `lastSeq` without gaps. Checked before anything is applied, so a refused
 * batch leaves the log as it was, like the file store.
 */
function checkContinues(batch: ReadonlyArray<{ seq: bigint }>, lastSeq: bigint): void {
  let expected = lastSeq + 1n;
  for (const record of batch) {
    if (record.seq !== expected) throw new StoreSequenceError(`expected seq ${expected}, got ${record.seq}`);
    expected++;
  }
}
