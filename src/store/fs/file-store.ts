import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { randomBytes } from "node:crypto";
import { mkdir, readdir, readFile, rename, rm } from "node:fs/promises";
import * as path from "node:path";
import { DiagnosticSeverity } from "../../../gen/worker_runtime/v1/runtime_pb.js";
import { TranscriptEntrySchema, type TranscriptEntry } from "../../../gen/worker_runtime/v1/transcript_pb.js";
import type { Run } from "../../../gen/worker_runtime/v1/run_pb.js";
import {
  StoreConflictError,
  StoreWriteError,
  type OpenedStore,
  type RestoredWorker,
  type RuntimeStore,
  type StoreDiagnostic,
  type StoreOpenInit,
  type StoredEvent,
  type StoredRun,
  type TranscriptRange,
  type WorkerRecord,
} from "../../runtime/store.js";
import { Disk, type FileStoreFaults } from "./disk.js";
import { createFileStoreStats, type FileStoreStats } from "./file-store-stats.js";
import {
  DELETING_PREFIX,
  RUNTIME_EVENTS_DIR,
  RUNTIME_SNAPSHOT,
  STAGING_PREFIX,
  WORKER_LOG_DIRS,
  WORKER_SNAPSHOT,
  WORKERS_DIR,
  workerDir,
  workerDirName,
  workerIdFromDirName,
} from "./layout.js";
import { decodeRuntimeSnapshot, encodeRuntimeSnapshot, type RuntimeSnapshot } from "./runtime-snapshot.js";
import { SegmentedLog } from "./segmented-log.js";
import { WorkerFiles, type LogSettings } from "./worker-files.js";
import { restoreWorker } from "./worker-restore.js";
import { DataDirLock } from "./data-dir-lock.js";
import { encodeWorkerSnapshot } from "./worker-snapshot.js";

/** Options for {@link createFileStore}. */
export interface FileStoreOptions {
  /** The data dir; created if missing. One data dir holds one runtime. */
  dataDir: string;
  /** Logs roll into a new segment file past this size (default 8 MiB). */
  segmentBytes?: number;
  /**
   * Event records kept per event log (worker and runtime-wide), at least;
   * older whole segments are deleted. Default 100,000, like the memory store.
   * Transcripts and runs are never pruned.
   */
  eventRetention?: number;
  /** Workers opened in parallel at start-up (default 32). */
  openConcurrency?: number;
  /**
   * Told when a read finds stored data damaged after open (open itself
   * reports damage as diagnostics and quarantined workers). `workerId` is
   * undefined for the runtime-wide event log. From then on the damaged
   * worker's logs refuse appends with StoreWriteError (snapshot writes are
   * still taken, so the worker can be saved as FAILED); the runtime should
   * serve the worker as FAILED with `message` as its diagnostic.
   */
  onCorruption?(workerId: string | undefined, message: string): void;
  /** Test-only fault injection (see {@link FileStoreFaults}). */
  faults?: FileStoreFaults;
}

/** The file store: a RuntimeStore plus cost counters for tests and benches. */
export interface FileStore extends RuntimeStore {
  readonly stats: FileStoreStats;
}

/** Scratch file written by `probeWrite`. */
const PROBE_FILE = "write.probe";

/**
 * Creates the crash-safe file store used by `worker-runtime serve --data-dir`.
 * Nothing is touched on disk until `open()`.
 */
export function createFileStore(options: FileStoreOptions): FileStore {
  return new FileStoreImpl(options);
}

class FileStoreImpl implements FileStore {
  readonly kind = "fs" as const;
  readonly stats = createFileStoreStats();
  private readonly disk: Disk;
  private readonly settings: LogSettings;
  private readonly workers = new Map<string, WorkerFiles>();
  /**
   * Tail of the chain of creations and deletions in flight per worker id.
   * Every put or delete of an id with an entry here is chained onto it
   * before any await, so two puts of a new worker, or a put and a delete,
   * land in call order instead of racing.
   */
  private readonly structural = new Map<string, Promise<void>>();
  private runtimeEvents: SegmentedLog | undefined;
  /**
   * Workers that had a run, transcript or snapshot write accepted since the
   * runtime-wide log last found them idle (see {@link earlierWorkerWrites}).
   */
  private readonly writing = new Set<WorkerFiles>();
  /** Held from open to close: one process per data dir. */
  private lock: DataDirLock | undefined;
  private runtimeId = "";
  /** Damage found while opening is reported as diagnostics, not through the hook. */
  private opened = false;
  private nextCreationIndex = 1;

  constructor(private readonly options: FileStoreOptions) {
    this.disk = new Disk(path.resolve(options.dataDir), options.faults);
    this.settings = {
      segmentBytes: options.segmentBytes ?? 8 * 1024 * 1024,
      eventRetention: options.eventRetention ?? 100_000,
      onCorruption: (workerId, message) => this.reportCorruption(workerId, message),
    };
  }

  async open(init: StoreOpenInit): Promise<OpenedStore> {
    const created = await mkdir(this.disk.root, { recursive: true });
    if (created !== undefined) await this.disk.syncNewRoot(created);
    this.lock = await DataDirLock.acquire(this.disk.root);
    try {
      return await this.openLocked(init);
    } catch (error) {
      await this.lock.release();
      this.lock = undefined;
      throw error;
    }
  }

  private async openLocked(init: StoreOpenInit): Promise<OpenedStore> {
    const { runtimeId, storeId } = await this.openRuntimeSnapshot(init);
    this.runtimeId = runtimeId;
    const diagnostics: StoreDiagnostic[] = [];
    this.runtimeEvents = new SegmentedLog({
      disk: this.disk,
      dir: RUNTIME_EVENTS_DIR,
      segmentBytes: this.settings.segmentBytes,
      retainRecords: this.settings.eventRetention,
      stats: this.stats,
      onCorruption: (message) => this.reportCorruption(undefined, message),
      // A runtime event is delivered once acknowledged and describes a run or
      // worker snapshot the core wrote just before it, side by side (RunChanged
      // right after putRun, WorkerUpdated right after putWorker). Written only
      // after those are durable, a crash can never leave an event that was
      // seen pointing at a run or state that was lost; refused when one of
      // them failed, no event is acknowledged for a write that did not happen.
      barrier: () => this.earlierWorkerWrites(),
    });
    for (const problem of await this.runtimeEvents.open()) {
      if (problem.kind === "corrupt") {
        throw new Error(
          `${problem.file} in the data dir is damaged (${problem.detail}); the runtime-wide event log cannot be ` +
            `trusted. Move the ${RUNTIME_EVENTS_DIR}/ directory aside (watchers will re-sync) and start again.`,
        );
      }
      diagnostics.push(tornDiagnostic(problem.file, problem.detail));
    }
    const workers = await this.openWorkers(diagnostics);
    this.opened = true;
    return { runtimeId, storeId, workers, lastRuntimeEventSeq: this.runtimeEvents.lastSeq, diagnostics };
  }

  putWorker(record: WorkerRecord): Promise<void> {
    const workerId = record.worker.ref?.workerId ?? "";
    if (workerId === "") return Promise.reject(new Error("file store: worker has no id"));
    const existing = this.workers.get(workerId);
    // Fast path: replacing the snapshot of a settled worker goes straight into
    // its snapshot chain, so an event appended right after sees it pending.
    if (existing && !this.structural.has(workerId)) return this.replaceSnapshot(existing, record);
    return this.chainStructural(workerId, () => {
      const current = this.workers.get(workerId);
      return current ? this.replaceSnapshot(current, record) : this.createWorker(workerId, record);
    });
  }

  deleteWorker(workerId: string): Promise<void> {
    return this.chainStructural(workerId, () => this.removeWorker(workerId));
  }

  async putRun(workerId: string, run: Run): Promise<void> {
    const files = this.writableFiles(workerId);
    this.writing.add(files);
    await files.runs.put(run);
  }

  async getRun(workerId: string, runId: string): Promise<Run | undefined> {
    return this.workers.get(workerId)?.runs.get(runId);
  }

  async listRuns(workerId: string, beforeOrdinal: number | undefined, limit: number): Promise<StoredRun[]> {
    return this.files(workerId).runs.list(beforeOrdinal, limit);
  }

  async appendTranscript(workerId: string, entries: TranscriptEntry[]): Promise<void> {
    const records = entries.map((entry) => ({ seq: entry.seq, body: toBinary(TranscriptEntrySchema, entry) }));
    const files = this.writableFiles(workerId);
    this.writing.add(files);
    await files.transcript.append(records);
  }

  async readTranscript(workerId: string, range: TranscriptRange, limit: number): Promise<TranscriptEntry[]> {
    const log = this.files(workerId).transcript;
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
    await this.writableFiles(workerId).events.append(events.map(({ seq, bytes }) => ({ seq, body: bytes })));
  }

  async readEvents(workerId: string, afterSeq: bigint, limit: number): Promise<StoredEvent[]> {
    const records = await this.files(workerId).events.read(afterSeq + 1n, limit);
    return records.map(({ seq, body }) => ({ seq, bytes: body }));
  }

  earliestEventSeq(workerId: string): bigint {
    return this.files(workerId).events.earliestSeq;
  }

  async appendRuntimeEvents(events: StoredEvent[]): Promise<void> {
    await this.runtimeLog().append(events.map(({ seq, bytes }) => ({ seq, body: bytes })));
  }

  async readRuntimeEvents(afterSeq: bigint, limit: number): Promise<StoredEvent[]> {
    const records = await this.runtimeLog().read(afterSeq + 1n, limit);
    return records.map(({ seq, body }) => ({ seq, bytes: body }));
  }

  earliestRuntimeEventSeq(): bigint {
    return this.runtimeLog().earliestSeq;
  }

  async probeWrite(): Promise<void> {
    try {
      await this.disk.replaceFile(PROBE_FILE, new Uint8Array([1]));
      await rm(this.disk.abs(PROBE_FILE), { force: true });
    } catch (error) {
      throw new StoreWriteError("the data dir cannot be written", { cause: error });
    }
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.structural.values()]);
    await Promise.all([...this.workers.values()].map((files) => files.drain().catch(() => undefined)));
    await this.runtimeEvents?.drain();
    await this.lock?.release();
    this.lock = undefined;
  }

  /**
   * Reads (or on first open, writes) the runtime snapshot. A damaged one
   * stops start-up: it says which runtime owns the data, and guessing would
   * hand the workers to another runtime id.
   */
  private async openRuntimeSnapshot(init: StoreOpenInit): Promise<RuntimeSnapshot> {
    let content: Buffer | undefined;
    try {
      content = await readFile(this.disk.abs(RUNTIME_SNAPSHOT));
    } catch (error) {
      if (!(error instanceof Error && "code" in error && error.code === "ENOENT")) throw error;
    }
    if (content === undefined) {
      const existing = await readdir(this.disk.abs(WORKERS_DIR)).catch(() => []);
      if (existing.some((name) => workerIdFromDirName(name) !== undefined)) {
        throw new Error(
          `${RUNTIME_SNAPSHOT} is missing from the data dir, which holds workers; without it the runtime id is ` +
            `unknown. Restore ${RUNTIME_SNAPSHOT} from a backup, or move the data dir aside to start a new runtime.`,
        );
      }
      const created = { runtimeId: init.runtimeId ?? init.generateRuntimeId(), storeId: randomBytes(16).toString("hex") };
      await mkdir(this.disk.abs(WORKERS_DIR), { recursive: true });
      await mkdir(this.disk.abs(RUNTIME_EVENTS_DIR), { recursive: true });
      await this.disk.replaceFile(RUNTIME_SNAPSHOT, encodeRuntimeSnapshot(created));
      return created;
    }
    const snapshot = decodeRuntimeSnapshot(content);
    if ("problem" in snapshot) {
      throw new Error(
        `${RUNTIME_SNAPSHOT} in the data dir is damaged (${snapshot.problem}). It records which runtime owns the ` +
          `data dir, so the runtime will not start with it. Restore ${RUNTIME_SNAPSHOT} from a backup, or move ` +
          `the data dir aside to start a new, empty runtime.`,
      );
    }
    if (init.runtimeId !== undefined && init.runtimeId !== snapshot.runtimeId) {
      throw new StoreConflictError(
        `the data dir belongs to runtime "${snapshot.runtimeId}", but runtime id "${init.runtimeId}" was ` +
          `configured; start without --runtime-id (or with "${snapshot.runtimeId}"), or use another --data-dir`,
      );
    }
    await mkdir(this.disk.abs(WORKERS_DIR), { recursive: true });
    await mkdir(this.disk.abs(RUNTIME_EVENTS_DIR), { recursive: true });
    return snapshot;
  }

  private async openWorkers(diagnostics: StoreDiagnostic[]): Promise<RestoredWorker[]> {
    const ids: string[] = [];
    for (const name of await readdir(this.disk.abs(WORKERS_DIR))) {
      if (name.startsWith(STAGING_PREFIX) || name.startsWith(DELETING_PREFIX)) {
        await rm(this.disk.abs(path.join(WORKERS_DIR, name)), { recursive: true, force: true });
        continue;
      }
      const id = workerIdFromDirName(name);
      if (id !== undefined && workerDirName(id) === name) ids.push(id);
    }
    const restored: Array<{ index: number; worker: RestoredWorker }> = [];
    let next = 0;
    const openNext = async (): Promise<void> => {
      while (next < ids.length) {
        const id = ids[next++];
        if (id === undefined) break;
        const result = await restoreWorker(id, this.runtimeId, this.disk, this.settings, this.stats);
        this.workers.set(id, result.files);
        diagnostics.push(...result.diagnostics);
        restored.push({ index: result.files.creationIndex, worker: result.restored });
      }
    };
    const lanes = Math.max(1, this.options.openConcurrency ?? 32);
    await Promise.all(Array.from({ length: lanes }, openNext));
    restored.sort(
      (a, b) => a.index - b.index || compare(a.worker.record.worker.ref?.workerId, b.worker.record.worker.ref?.workerId),
    );
    this.nextCreationIndex = restored.reduce((max, r) => Math.max(max, r.index), 0) + 1;
    return restored.map((r) => r.worker);
  }

  /**
   * Runs `op` after every creation or deletion of `workerId` already chained,
   * registering it before any await. The entry is dropped once the chain is
   * idle, so settled workers take the fast path in {@link putWorker}.
   */
  private chainStructural(workerId: string, op: () => Promise<void>): Promise<void> {
    const previous = this.structural.get(workerId) ?? Promise.resolve();
    const result = previous.then(op);
    const tail = result.then(
      () => undefined,
      () => undefined,
    );
    this.structural.set(workerId, tail);
    void tail.then(() => {
      if (this.structural.get(workerId) === tail) this.structural.delete(workerId);
    });
    return result;
  }

  private async replaceSnapshot(files: WorkerFiles, record: WorkerRecord): Promise<void> {
    const workerId = files.workerId;
    const bytes = encodeWorkerSnapshot({ record, creationIndex: files.creationIndex });
    this.writing.add(files);
    await files.chainSnapshot(() => writeOrFail(() => this.disk.replaceFile(snapshotOf(workerId), bytes)));
    files.record = record;
  }

  /**
   * Creates a worker directory complete (snapshot and empty log dirs) under a
   * staging name, then renames it into place, so a crash never leaves a
   * half-created worker that would look damaged at the next open. The
   * staging name is unique per attempt, so a failed attempt's leftovers
   * never mix with a later one's.
   */
  private async createWorker(workerId: string, record: WorkerRecord): Promise<void> {
    const creationIndex = this.nextCreationIndex++;
    const suffix = randomBytes(4).toString("hex");
    const staging = path.join(WORKERS_DIR, `${STAGING_PREFIX}${workerDirName(workerId)}-${suffix}`);
    await writeOrFail(async () => {
      for (const dir of WORKER_LOG_DIRS) await mkdir(this.disk.abs(path.join(staging, dir)), { recursive: true });
      await this.disk.replaceFile(path.join(staging, WORKER_SNAPSHOT), encodeWorkerSnapshot({ record, creationIndex }));
      await rename(this.disk.abs(staging), this.disk.abs(workerDir(workerId)));
      await this.disk.syncDir(WORKERS_DIR);
    }).catch(async (error: unknown) => {
      await rm(this.disk.abs(staging), { recursive: true, force: true }).catch(() => undefined);
      throw error;
    });
    this.workers.set(workerId, new WorkerFiles(workerId, record, creationIndex, this.disk, this.settings, this.stats));
  }

  private async removeWorker(workerId: string): Promise<void> {
    const files = this.workers.get(workerId);
    if (!files) return;
    this.workers.delete(workerId);
    this.writing.delete(files);
    await files.drain();
    const away = path.join(WORKERS_DIR, `${DELETING_PREFIX}${workerDirName(workerId)}-${randomBytes(4).toString("hex")}`);
    await writeOrFail(async () => {
      await rename(this.disk.abs(files.dir), this.disk.abs(away));
      await this.disk.syncDir(WORKERS_DIR);
    });
    await rm(this.disk.abs(away), { recursive: true, force: true });
  }

  /**
   * Resolves once every run, transcript and snapshot write accepted so far,
   * of any worker, is durable; rejects if one of them fails; undefined when
   * none is pending. Only workers written since they were last found idle
   * are looked at, so the cost follows the busy workers, not all of them.
   */
  private earlierWorkerWrites(): Promise<void> | undefined {
    const waits: Promise<void>[] = [];
    for (const files of this.writing) {
      const pending = files.pendingWrites();
      if (pending === undefined) this.writing.delete(files);
      else waits.push(pending);
    }
    if (waits.length === 0) return undefined;
    return Promise.all(waits).then(() => undefined);
  }

  private files(workerId: string): WorkerFiles {
    const files = this.workers.get(workerId);
    if (!files) throw new Error(`file store: unknown worker ${workerId}`);
    return files;
  }

  private reportCorruption(workerId: string | undefined, message: string): void {
    if (this.opened) this.options.onCorruption?.(workerId, message);
  }

  /** Like {@link files}, but an unknown (e.g. deleted) worker is the contract's write failure. */
  private writableFiles(workerId: string): WorkerFiles {
    const files = this.workers.get(workerId);
    if (!files) throw new StoreWriteError(`file store: unknown worker ${workerId}`);
    return files;
  }

  private runtimeLog(): SegmentedLog {
    if (!this.runtimeEvents) throw new Error("file store: not open");
    return this.runtimeEvents;
  }
}

function snapshotOf(workerId: string): string {
  return path.join(workerDir(workerId), WORKER_SNAPSHOT);
}

function tornDiagnostic(file: string, detail: string): StoreDiagnostic {
  return {
    severity: DiagnosticSeverity.WARNING,
    code: "store.torn_tail_truncated",
    message: `${file}: an unfinished write at the end of the log was truncated (${detail})`,
  };
}

/** Runs a write and turns any failure into the contract's StoreWriteError (cause kept). */
async function writeOrFail(write: () => Promise<void>): Promise<void> {
  try {
    await write();
  } catch (error) {
    if (error instanceof StoreWriteError) throw error;
    throw new StoreWriteError("file store write failed", { cause: error });
  }
}

function compare(a: string | undefined, b: string | undefined): number {
  return (a ?? "").localeCompare(b ?? "");
}
