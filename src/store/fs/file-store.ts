import type { ConfigBundle } from "../../../gen/worker_runtime/v1/profile_pb.js";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { createDataDir } from "./data-dir-create.js";
import { checkDataDirFormat } from "./data-dir-format.js";
import * as path from "node:path";
import { TranscriptEntrySchema, type TranscriptEntry } from "../../../gen/worker_runtime/v1/transcript_pb.js";
import type { Run } from "../../../gen/worker_runtime/v1/run_pb.js";
import type {
  OpenedStore,
  PutRunInit,
  RuntimeMetrics,
  RuntimeStore,
  StoreOpenInit,
  StoredEvent,
  StoredRun,
  TranscriptRange,
  WorkerRecord,
} from "../../runtime/index.js";
import { DEFAULT_LIMITS } from "../../runtime/index.js";
import { DataDirLock, isLockAttempt } from "./data-dir-lock.js";
import { sweepTempFiles } from "./temp-sweep.js";
import { Disk, type FileStoreFaults } from "./disk.js";
import { createFileStoreStats, type FileStoreStats } from "./file-store-stats.js";
import { openWorkers } from "./open-workers.js";
import { readConfigBundles, writeConfigBundle } from "./config-bundle-files.js";
import { openRuntimeEventLog } from "./runtime-event-log.js";
import { openRuntimeId } from "./runtime-id.js";
import { RUN_CHECKPOINT, type RunCheckpointBounds } from "./run-log.js";
import type { SegmentedLog } from "./segmented-log.js";
import type { LogSettings } from "./worker-files.js";
import { WorkerRegistry } from "./worker-registry.js";
import { WriteGate } from "./write-gate.js";
import { probeWrite } from "./write-probe.js";

/** Options for {@link createFileStore}. */
export interface FileStoreOptions {
  /** The data dir; created if missing. One data dir holds one runtime. */
  dataDir: string;
  /** Logs roll into a new segment file past this size (default 8 MiB). */
  segmentBytes?: number;
  /**
   * Event records kept per event log (worker and runtime-wide), at least;
   * older whole segments are deleted. When unset, the runtime's
   * `limits.eventRetention` (given at open), else 100,000; when set, it
   * wins over the runtime's limit.
   * Transcripts and runs are never pruned; open reads a run log's index
   * checkpoint and the records after it, not the whole log (run-log.ts).
   */
  eventRetention?: number;
  /**
   * Bytes of event records kept per event log, at least: older whole
   * segments go past this too. When unset, the runtime's
   * `limits.eventRetentionBytes` (given at open), else 64 MiB; when set, it
   * wins over the runtime's limit. Each
   * run_changed record carries its run's input, so 100,000 records alone
   * could take gigabytes of disk per worker.
   */
  eventRetentionBytes?: number;
  /** Workers opened in parallel at start-up (default 32). */
  openConcurrency?: number;
  /**
   * Told when a read finds stored data damaged after open (open itself
   * reports damage as diagnostics and quarantined workers). `workerId` is
   * undefined for the runtime-wide event log. From then on the damaged
   * worker's logs refuse appends with StoreWriteError (snapshot writes are
   * still taken, so the worker can be saved as FAILED); the runtime should
   * serve the worker as FAILED with `message` as its diagnostic. `message`
   * names the file relative to the data dir; `hostDetail` says the same with
   * the absolute file, for the operator's log only (Runtime.reportCorruption
   * takes both).
   */
  onCorruption?(workerId: string | undefined, message: string, hostDetail: string): void;
  /**
   * Test-only: other bounds for the run index checkpoint than the defaults
   * (`RUN_CHECKPOINT` in run-log.ts), so that a test can reach one without
   * writing megabytes of runs.
   */
  runCheckpoint?: Partial<RunCheckpointBounds>;
  /** Test-only fault injection (see {@link FileStoreFaults}). */
  faults?: FileStoreFaults;
  /** Where fsync and group-commit timings are counted (the runtime's metrics); nowhere by default. */
  metrics?: RuntimeMetrics;
}

/** The file store: a RuntimeStore plus cost counters for tests and benches. */
export interface FileStore extends RuntimeStore {
  readonly stats: FileStoreStats;
}

/**
 * Creates the crash-safe file store used by `worker-runtime serve --data-dir`.
 * Nothing is touched on disk until `open()`.
 */
export function createFileStore(options: FileStoreOptions): FileStore {
  return new FileStoreImpl(options);
}

/**
 * The RuntimeStore face of the file store: it maps the contract onto the
 * workers' files (worker-registry.ts, worker-files.ts) and the runtime-wide
 * event log (runtime-event-log.ts); opening is in runtime-id.ts and
 * open-workers.ts.
 */
class FileStoreImpl implements FileStore {
  readonly kind = "fs" as const;
  readonly stats = createFileStoreStats();
  private readonly disk: Disk;
  private readonly settings: LogSettings;
  private readonly registry: WorkerRegistry;
  private runtimeEvents: SegmentedLog | undefined;
  /** Held from open to close: one process per data dir. */
  private lock: DataDirLock | undefined;
  /** Damage found while opening is reported as diagnostics, not through the hook. */
  private opened = false;
  /** Refuses writes once close begins; tracks the writes no drain covers. */
  private readonly gate = new WriteGate();
  /** Set by the first close; later ones wait for it. */
  private closing: Promise<void> | undefined;

  constructor(private readonly options: FileStoreOptions) {
    this.disk = new Disk(path.resolve(options.dataDir), options.faults, options.metrics);
    this.settings = {
      segmentBytes: options.segmentBytes ?? 8 * 1024 * 1024,
      eventRetention: options.eventRetention ?? DEFAULT_LIMITS.eventRetention,
      eventRetentionBytes: options.eventRetentionBytes ?? DEFAULT_LIMITS.eventRetentionBytes,
      runCheckpoint: { ...RUN_CHECKPOINT, ...options.runCheckpoint },
      onCorruption: (workerId, message, hostDetail) => this.reportCorruption(workerId, message, hostDetail),
    };
    this.registry = new WorkerRegistry(this.disk, this.settings, this.stats);
  }

  async open(init: StoreOpenInit): Promise<OpenedStore> {
    // The runtime's limits, unless this store was given its own (set before any log opens: they share `settings`).
    this.settings.eventRetention = this.options.eventRetention ?? init.eventRetention?.events ?? this.settings.eventRetention;
    this.settings.eventRetentionBytes = this.options.eventRetentionBytes ?? init.eventRetention?.bytes ?? this.settings.eventRetentionBytes;
    const created = await createDataDir(this.disk.root);
    if (created !== undefined) await this.disk.syncNewRoot(created);
    const lock = await DataDirLock.acquire(this.disk);
    this.lock = lock;
    try {
      await checkDataDirFormat(this.disk);
      const { runtimeId, storeId } = await openRuntimeId(this.disk, init);
      const runtimeEvents = await openRuntimeEventLog({
        disk: this.disk,
        segmentBytes: this.settings.segmentBytes,
        eventRetention: this.settings.eventRetention,
        eventRetentionBytes: this.settings.eventRetentionBytes,
        stats: this.stats,
        onCorruption: (message, hostDetail) => this.reportCorruption(undefined, message, hostDetail),
        earlierWorkerWrites: () => this.registry.earlierWrites(),
      });
      this.runtimeEvents = runtimeEvents.log;
      const workers = await openWorkers({
        disk: this.disk,
        runtimeId,
        settings: this.settings,
        stats: this.stats,
        concurrency: this.options.openConcurrency ?? 32,
      });
      this.registry.adopt(workers.files);
      const bundles = await readConfigBundles(this.disk);
      // Another process's lock attempt writes LOCK.tmp-* here too: not ours to remove while it may still be going on.
      const swept = await sweepTempFiles(this.disk, ".", (name) => isLockAttempt(this.disk.abs(name)));
      this.opened = true;
      return {
        runtimeId,
        storeId,
        workers: workers.restored,
        lastRuntimeEventSeq: runtimeEvents.log.lastSeq,
        diagnostics: [...runtimeEvents.diagnostics, ...workers.diagnostics, ...swept],
        configBundles: bundles.bundles,
        // Only when there are any: an empty store opens as the memory store does (the store contract).
        ...(bundles.damaged.length > 0 ? { damagedConfigBundles: bundles.damaged } : {}),
      };
    } catch (error) {
      await lock.release();
      this.lock = undefined;
      throw error;
    }
  }

  putConfigBundle(bundle: ConfigBundle): Promise<void> {
    return this.gate.run(() => writeConfigBundle(this.disk, bundle));
  }

  async putWorker(record: WorkerRecord): Promise<void> {
    this.gate.check();
    return this.registry.put(record);
  }

  async deleteWorker(workerId: string): Promise<void> {
    this.gate.check();
    return this.registry.delete(workerId);
  }

  async putRun(workerId: string, run: Run, init: PutRunInit): Promise<void> {
    this.gate.check();
    await this.registry.writableTracked(workerId).runs.put(run, init);
  }

  async getRun(workerId: string, runId: string): Promise<Run | undefined> {
    return this.registry.find(workerId)?.runs.get(runId);
  }

  async listRuns(workerId: string, beforeOrdinal: number | undefined, limit: number): Promise<StoredRun[]> {
    return this.registry.files(workerId).runs.list(beforeOrdinal, limit);
  }

  async appendTranscript(workerId: string, entries: TranscriptEntry[]): Promise<void> {
    this.gate.check();
    const records = entries.map((entry) => ({ seq: entry.seq, body: toBinary(TranscriptEntrySchema, entry) }));
    await this.registry.writableTracked(workerId).transcript.append(records);
  }

  async readTranscript(workerId: string, range: TranscriptRange, limit: number): Promise<TranscriptEntry[]> {
    const log = this.registry.files(workerId).transcript;
    let from: bigint;
    let count: number;
    if (range.kind === "after") {
      from = range.afterSeq + 1n;
      count = limit;
    } else {
      const end = range.beforeSeq <= log.lastSeq + 1n ? range.beforeSeq : log.lastSeq + 1n;
      from = end - BigInt(limit) > 1n ? end - BigInt(limit) : 1n;
      count = Number(end - from);
    }
    const records = await log.read(from, count);
    return records.map((record) => fromBinary(TranscriptEntrySchema, record.body));
  }

  async appendEvents(workerId: string, events: StoredEvent[]): Promise<void> {
    this.gate.check();
    await this.registry.writable(workerId).events.append(events.map(({ seq, bytes }) => ({ seq, body: bytes })));
  }

  async readEvents(workerId: string, afterSeq: bigint, limit: number): Promise<StoredEvent[]> {
    const records = await this.registry.files(workerId).events.read(afterSeq + 1n, limit);
    return records.map(({ seq, body }) => ({ seq, bytes: body }));
  }

  earliestEventSeq(workerId: string): bigint {
    return this.registry.files(workerId).events.earliestSeq;
  }

  async appendRuntimeEvents(events: StoredEvent[]): Promise<void> {
    this.gate.check();
    await this.runtimeLog().append(events.map(({ seq, bytes }) => ({ seq, body: bytes })));
  }

  async readRuntimeEvents(afterSeq: bigint, limit: number): Promise<StoredEvent[]> {
    const records = await this.runtimeLog().read(afterSeq + 1n, limit);
    return records.map(({ seq, body }) => ({ seq, bytes: body }));
  }

  earliestRuntimeEventSeq(): bigint {
    return this.runtimeLog().earliestSeq;
  }

  probeWrite(): Promise<void> {
    return this.gate.run(() => probeWrite(this.disk));
  }

  /**
   * Refuses writes from the first call on, waits for every write already
   * accepted, writes the run index checkpoints that are due (so the next
   * open reads little of the run logs; a checkpoint being built is
   * abandoned and none is built for a worker over `atCloseMaxRuns`, so the
   * close does not grow with any worker's history), then releases the lock: nothing is
   * written into the data dir once another process may own it. Later calls
   * wait for the first.
   */
  async close(): Promise<void> {
    this.closing ??= (async () => {
      await this.gate.close();
      await this.registry.drain();
      await this.registry.checkpointRuns();
      await this.runtimeEvents?.drain();
      await this.lock?.release();
      this.lock = undefined;
    })();
    await this.closing;
  }

  private reportCorruption(workerId: string | undefined, message: string, hostDetail: string): void {
    if (this.opened) this.options.onCorruption?.(workerId, message, hostDetail);
  }

  private runtimeLog(): SegmentedLog {
    if (!this.runtimeEvents) throw new Error("file store: not open");
    return this.runtimeEvents;
  }
}
