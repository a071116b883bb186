import { randomBytes } from "node:crypto";
import { mkdir, rename, rm } from "node:fs/promises";
import * as path from "node:path";
import { StoreWriteError, type WorkerRecord } from "../../runtime/index.js";
import type { Disk } from "./disk.js";
import type { FileStoreStats } from "./file-store-stats.js";
import {
  DELETING_PREFIX,
  STAGING_PREFIX,
  WORKER_CREATED,
  WORKER_LOG_DIRS,
  WORKER_SNAPSHOT,
  WORKERS_DIR,
  workerDir,
  workerDirName,
} from "./layout.js";
import { WorkerFiles, type LogSettings } from "./worker-files.js";
import { encodeWorkerSnapshot } from "./worker-snapshot.js";

/** Run index checkpoints written in parallel at close. */
const CHECKPOINTS_AT_ONCE = 8;

/**
 * The workers of a data dir by id: creating, re-snapshotting and deleting
 * them in call order per id, and knowing which ones have run, transcript or
 * snapshot writes in flight (what a runtime event must wait for).
 */
export class WorkerRegistry {
  private readonly workers = new Map<string, WorkerFiles>();
  /**
   * Tail of the chain of creations and deletions in flight per worker id.
   * Every put or delete of an id with an entry here is chained onto it
   * before any await, so two puts of a new worker, or a put and a delete,
   * land in call order instead of racing.
   */
  private readonly structural = new Map<string, Promise<void>>();
  /**
   * Workers that had a run, transcript or snapshot write accepted since
   * {@link earlierWrites} last found them idle.
   */
  private readonly writing = new Set<WorkerFiles>();
  /** Ids whose delete is under way: writes for them are refused, reads still served. */
  private readonly deleting = new Set<string>();
  private nextCreationIndex = 1;

  constructor(
    private readonly disk: Disk,
    private readonly settings: LogSettings,
    private readonly stats: FileStoreStats,
  ) {}

  /** Takes over the workers found at open; new ones are numbered after them. */
  adopt(opened: readonly WorkerFiles[]): void {
    for (const files of opened) this.workers.set(files.workerId, files);
    this.nextCreationIndex = opened.reduce((max, files) => Math.max(max, files.creationIndex), 0) + 1;
  }

  /** Creates a worker, or replaces its snapshot, after any creation or deletion of its id already issued. */
  put(record: WorkerRecord): Promise<void> {
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

  /** Removes a worker with all of its files, in call order with its puts. */
  delete(workerId: string): Promise<void> {
    return this.chainStructural(workerId, () => this.removeWorker(workerId));
  }

  /** The files of a worker, if it exists. */
  find(workerId: string): WorkerFiles | undefined {
    return this.workers.get(workerId);
  }

  /** The files of a worker, for reads. */
  files(workerId: string): WorkerFiles {
    const files = this.workers.get(workerId);
    if (!files) throw new Error(`file store: unknown worker ${workerId}`);
    return files;
  }

  /** Like {@link files}, but an unknown (e.g. deleted) worker is the contract's write failure. */
  writable(workerId: string): WorkerFiles {
    const files = this.workers.get(workerId);
    if (!files || this.deleting.has(workerId)) throw new StoreWriteError(`file store: unknown worker ${workerId}`);
    return files;
  }

  /** Like {@link writable}, for a run or transcript write that later runtime events must wait for. */
  writableTracked(workerId: string): WorkerFiles {
    const files = this.writable(workerId);
    this.writing.add(files);
    return files;
  }

  /**
   * Resolves once every run, transcript and snapshot write accepted so far,
   * of any worker, is durable; rejects if one of them fails; undefined when
   * none is pending. Only workers written since they were last found idle
   * are looked at, so the cost follows the busy workers, not all of them.
   */
  earlierWrites(): Promise<void> | undefined {
    const waits: Promise<void>[] = [];
    for (const files of this.writing) {
      const pending = files.pendingWrites();
      if (pending === undefined) this.writing.delete(files);
      else waits.push(pending);
    }
    if (waits.length === 0) return undefined;
    return Promise.all(waits).then(() => undefined);
  }

  /** Waits for every creation, deletion and write issued so far to finish (successfully or not). */
  async drain(): Promise<void> {
    await Promise.allSettled([...this.structural.values()]);
    await Promise.all([...this.workers.values()].map((files) => files.drain().catch(() => undefined)));
  }

  /**
   * At close, after {@link drain}: writes the run index checkpoint of each
   * worker whose runs log grew enough since its last one, a few workers at a
   * time (each is an atomic replace, with its fsyncs). Never rejects.
   */
  async checkpointRuns(): Promise<void> {
    const workers = [...this.workers.values()];
    for (let i = 0; i < workers.length; i += CHECKPOINTS_AT_ONCE) {
      await Promise.all(workers.slice(i, i + CHECKPOINTS_AT_ONCE).map((files) => files.runs.checkpointAtClose()));
    }
  }

  /**
   * Runs `op` after every creation or deletion of `workerId` already chained,
   * registering it before any await. The entry is dropped once the chain is
   * idle, so settled workers take the fast path in {@link put}.
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
   * never mix with a later one's. Nothing in the staging dir can be seen
   * before the rename, so its two files (the snapshot, and `worker.created`,
   * the same first bytes kept for good) are written as new files, their
   * fdatasyncs in parallel, and one fsync of the staging dir makes every
   * name in it durable: three syncs in a row, not four.
   */
  private async createWorker(workerId: string, record: WorkerRecord): Promise<void> {
    const creationIndex = this.nextCreationIndex++;
    const suffix = randomBytes(4).toString("hex");
    const staging = path.join(WORKERS_DIR, `${STAGING_PREFIX}${workerDirName(workerId)}-${suffix}`);
    await writeOrFail(async () => {
      for (const dir of WORKER_LOG_DIRS) await mkdir(this.disk.abs(path.join(staging, dir)), { recursive: true });
      const snapshot = encodeWorkerSnapshot({ record, creationIndex });
      await Promise.all([
        this.disk.writeNewFile(path.join(staging, WORKER_CREATED), snapshot),
        this.disk.writeNewFile(path.join(staging, WORKER_SNAPSHOT), snapshot),
      ]);
      await this.disk.syncDir(staging);
      await rename(this.disk.abs(staging), this.disk.abs(workerDir(workerId)));
      await this.disk.syncDir(WORKERS_DIR);
    }).catch(async (error: unknown) => {
      await rm(this.disk.abs(staging), { recursive: true, force: true }).catch(() => undefined);
      throw error;
    });
    this.workers.set(workerId, new WorkerFiles(workerId, record, creationIndex, this.disk, this.settings, this.stats));
  }

  /**
   * Renames the worker's directory away durably, then removes it. Writes are
   * refused from the start (nothing may recreate what is being deleted);
   * reads are served until the rename. A failed delete leaves the worker
   * whole, as the rejection says: a rename whose directory fsync failed is
   * undone, since the next open would otherwise finish the delete that the
   * caller was told failed. Only if the undo fails too is the worker left
   * renamed away: open removes it, and a repeated delete succeeds.
   */
  private async removeWorker(workerId: string): Promise<void> {
    const files = this.workers.get(workerId);
    if (!files) return;
    this.deleting.add(workerId);
    this.writing.delete(files);
    try {
      await files.drain();
      const suffix = randomBytes(4).toString("hex");
      const away = path.join(WORKERS_DIR, `${DELETING_PREFIX}${workerDirName(workerId)}-${suffix}`);
      await writeOrFail(() => rename(this.disk.abs(files.dir), this.disk.abs(away)));
      this.workers.delete(workerId);
      await writeOrFail(() => this.disk.syncDir(WORKERS_DIR)).catch(async (error: unknown) => {
        await rename(this.disk.abs(away), this.disk.abs(files.dir)).then(
          () => this.workers.set(workerId, files),
          () => undefined,
        );
        throw error;
      });
      // The worker is gone once the rename is durable; removing its files is
      // cleanup, which open repeats for a `.del-` dir left behind (open-workers.ts).
      await rm(this.disk.abs(away), { recursive: true, force: true }).catch(() => undefined);
    } finally {
      this.deleting.delete(workerId);
    }
  }
}

function snapshotOf(workerId: string): string {
  return path.join(workerDir(workerId), WORKER_SNAPSHOT);
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
