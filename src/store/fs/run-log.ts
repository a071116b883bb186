import { fromBinary } from "@bufbuild/protobuf";
import { open } from "node:fs/promises";
import { RunSchema, type Run } from "../../../gen/worker_runtime/v1/run_pb.js";
import { cloneMessage, StoreWriteError, type PutRunInit, type RestoredWorker, type StoredRun } from "../../runtime/index.js";
import { crc32 } from "./crc32.js";
import { type Disk, errorCode } from "./disk.js";
import type { FileStoreStats } from "./file-store-stats.js";
import type { LogRecord } from "./record-frame.js";
import { RunIndex } from "./run-index.js";
import { readRunIndexCheckpoint, runIndexCheckpointFrames } from "./run-index-checkpoint.js";
import { decodeRunRecord, encodeRunRecord, type RunRecord } from "./run-record.js";
import type { SegmentedLog } from "./segmented-log.js";

/**
 * Bytes of run records read at a time while rebuilding the index at open:
 * workers open 32 at a time, and 512 run versions with inputs of the
 * default limit (256 KiB) would be 128 MiB in one read.
 */
const OPEN_READ_BYTES = 1024 * 1024;

/** Name of the run index checkpoint in a worker's runs log dir. */
export const RUN_CHECKPOINT_FILE = "run-index.checkpoint";

/**
 * When the run index checkpoint is written: once this many records or bytes
 * of run records were made durable since the last attempt (so open never
 * reads more than that past it), and at close when at least the `atClose`
 * amounts are past the checkpoint (a shorter tail costs less to read at open
 * than three fsyncs cost at close).
 */
export const RUN_CHECKPOINT: RunCheckpointBounds = {
  everyRecords: 1024,
  everyBytes: 8 * 1024 * 1024,
  atCloseRecords: 64,
  atCloseBytes: 1024 * 1024,
  frameBytes: 64 * 1024,
  atCloseMaxRuns: 100_000,
};

/** The bounds of {@link RUN_CHECKPOINT}; a test lowers them through `FileStoreOptions.runCheckpoint`. */
export interface RunCheckpointBounds {
  everyRecords: number;
  everyBytes: number;
  atCloseRecords: number;
  atCloseBytes: number;
  /**
   * Bytes of entries per frame of the checkpoint file: the most encoded in
   * one turn of the event loop (64 KiB, about 1,500 runs) before the write
   * of that frame lets other work run.
   */
  frameBytes: number;
  /**
   * Close writes no checkpoint for a worker with more runs (100,000, about
   * 5 MiB of checkpoint) and abandons one being built: close must not wait
   * for a build that grows with a worker's history, and the background
   * checkpoint already keeps open's tail to about one interval.
   */
  atCloseMaxRuns: number;
}

/** What open found in the runs log. */
export type RestoredRuns = Pick<RestoredWorker, "runCount" | "unfinishedRuns" | "recentRequestIds">;

/** Where a run log keeps its checkpoint. */
export interface RunLogInit {
  disk: Disk;
  /** The checkpoint file, relative to the data dir. */
  checkpointFile: string;
  stats: FileStoreStats;
  bounds: RunCheckpointBounds;
}

/** Run records made durable, counted since open. */
interface Progress {
  records: number;
  bytes: number;
}

/**
 * A worker's runs as an append-only log of run versions (latest wins). The
 * ordinal of a run is the order in which its first version became durable,
 * so ordinals need no separate bookkeeping and can never have gaps. The
 * {@link RunIndex} (run id → ordinal → latest version, unfinished runs,
 * recent request ids) makes `getRun`/`listRuns` O(1) per run returned; it
 * is checkpointed to a file every so many records and at close, and open
 * restores it from the checkpoint plus the records after it, or from the
 * whole log when the checkpoint is missing or cannot be trusted.
 * Reads see a version as soon as `put` is called, before it is durable, as
 * with the memory store: the runtime shows a run's end (worker IDLE) at
 * once, and a GetRun after that must not still say RUNNING.
 */
export class RunLog {
  private index = new RunIndex();
  /** Versions being written, by run id: what reads return until the write settles. */
  private readonly pending = new Map<string, Run>();
  /** False while open rebuilds the index and after it failed: an incomplete index is never checkpointed. */
  private complete = true;
  /** CRC-32 of the body of the last record applied. */
  private lastCrc = 0;
  private readonly applied: Progress = { records: 0, bytes: 0 };
  /** `applied` as of the checkpoint on disk, and as of the last attempt to write one. */
  private checkpointed: Progress = { records: 0, bytes: 0 };
  private attempted: Progress = { records: 0, bytes: 0 };
  private writing: Promise<void> | undefined;
  private stopped = false;
  /** Aborted by {@link settle}: a background checkpoint stops at its next frame. */
  private readonly stopping = new AbortController();

  constructor(
    private readonly log: SegmentedLog,
    private readonly init: RunLogInit,
  ) {}

  /** Called by the log for every durable batch, in file order. */
  readonly onDurable = (records: readonly LogRecord[]): void => {
    let last: Uint8Array | undefined;
    for (const record of records) {
      const header = decodeRunRecord(record.body);
      if (!header) continue;
      this.apply(header, record);
      last = record.body;
    }
    if (last === undefined) return;
    this.lastCrc = crc32(last);
    if (!this.stopped && past(this.applied, this.attempted, this.init.bounds.everyRecords, this.init.bounds.everyBytes))
      this.startCheckpoint();
  };

  /**
   * Restores the index from the (already opened) log: from the checkpoint
   * and the records after it, or, when the checkpoint is missing or cannot
   * be trusted, from every record. `checkpointProblem` says why a checkpoint
   * that exists was not used.
   */
  async open(): Promise<{ runs: RestoredRuns; checkpointProblem?: string }> {
    this.complete = false;
    const checkpoint = await this.readCheckpoint();
    this.index = checkpoint instanceof RunIndex ? checkpoint : new RunIndex();
    let last: LogRecord | undefined;
    for (let seq = BigInt(this.index.lastSeq) + 1n; seq <= this.log.lastSeq; ) {
      const records = await this.log.read(seq, 512, OPEN_READ_BYTES);
      if (records.length === 0) break;
      for (const record of records) {
        const header = decodeRunRecord(record.body);
        if (!header) throw new Error(`run record ${record.seq} is malformed`);
        this.apply(header, record);
        seq = record.seq + 1n;
      }
      last = records.at(-1);
    }
    if (last) this.lastCrc = crc32(last.body);
    const unfinishedRuns: Run[] = [];
    for (const ordinal of this.index.unfinishedOrdinals()) {
      const stored = await this.readOrdinal(ordinal);
      if (!stored) throw new Error(`unfinished run ${ordinal} could not be read`);
      unfinishedRuns.push(stored.run);
    }
    this.complete = true;
    return {
      runs: { runCount: this.index.count, unfinishedRuns, recentRequestIds: this.index.recentRequests() },
      ...(typeof checkpoint === "string" ? { checkpointProblem: checkpoint } : {}),
    };
  }

  /** Number of runs durably stored. */
  get count(): number {
    return this.index.count;
  }

  /** Appends a new version of a run with the core's request fingerprint; durable on resolve. */
  async put(run: Run, { fingerprint }: PutRunInit): Promise<void> {
    const body = encodeRunRecord(run, fingerprint);
    const version = cloneMessage(RunSchema, run);
    this.pending.set(run.runId, version);
    try {
      await this.log.append([{ seq: this.log.nextSeq, body }]);
    } catch (error) {
      // Seq numbers of this log are internal, so every failure is a write failure.
      if (error instanceof StoreWriteError) throw error;
      throw new StoreWriteError("run was not stored: an earlier write failed", { cause: error });
    } finally {
      // Durable (and indexed) or failed: either way the log answers from now on.
      if (this.pending.get(run.runId) === version) this.pending.delete(run.runId);
    }
  }

  async get(runId: string): Promise<Run | undefined> {
    const pending = this.pending.get(runId);
    if (pending) return cloneMessage(RunSchema, pending);
    const ordinal = this.index.ordinalOf(runId);
    return ordinal === undefined ? undefined : (await this.readOrdinal(ordinal))?.run;
  }

  async list(beforeOrdinal: number | undefined, limit: number): Promise<StoredRun[]> {
    const count = this.index.count;
    const end = Math.min(beforeOrdinal === undefined ? count : beforeOrdinal - 1, count);
    const page: StoredRun[] = [];
    for (let ordinal = end; ordinal >= 1 && page.length < limit; ordinal--) {
      const stored = await this.readOrdinal(ordinal);
      if (stored) page.push(stored);
    }
    return page;
  }

  /**
   * Stops writing checkpoints and abandons the one being built (it stops at
   * its next frame and removes its temp file, the previous checkpoint
   * staying in place): the worker is going away (deleted, or the store
   * closes), and a build grows with the worker's history. Never rejects.
   */
  async settle(): Promise<void> {
    this.stopped = true;
    this.stopping.abort();
    await this.writing;
  }

  /**
   * At close, after {@link settle}: writes a last checkpoint if enough run
   * records came after the one on disk and the worker is not over
   * `atCloseMaxRuns`. A checkpoint is only ever a
   * shortcut, so a failure to write it is not an error (open falls back).
   */
  async checkpointAtClose(): Promise<void> {
    if (this.index.count > this.init.bounds.atCloseMaxRuns) return;
    if (past(this.applied, this.checkpointed, this.init.bounds.atCloseRecords, this.init.bounds.atCloseBytes)) await this.writeCheckpoint();
  }

  private apply(header: RunRecord, record: LogRecord): void {
    this.index.apply(header, Number(record.seq));
    this.applied.records++;
    this.applied.bytes += record.body.length;
  }

  /** Starts a checkpoint in the background unless one is being written; chains another if the log moved on meanwhile. */
  private startCheckpoint(): void {
    if (this.writing) return;
    const written = this.writeCheckpoint(this.stopping.signal).finally(() => {
      if (this.writing === written) this.writing = undefined;
      if (!this.stopped && past(this.applied, this.attempted, this.init.bounds.everyRecords, this.init.bounds.everyBytes)) {
        this.startCheckpoint();
      }
    });
    this.writing = written;
  }

  /**
   * Writes the index as of the last durable record (frozen now, before any
   * await) atomically (temp file, fsync, rename, fsync dir), encoding one
   * frame per write so that the event loop turns between frames; stops at
   * the next frame once `signal` is aborted. Only a complete index of an
   * undamaged log is written. Never rejects.
   */
  private async writeCheckpoint(signal?: AbortSignal): Promise<void> {
    if (!this.complete || this.log.damaged !== undefined || this.index.lastSeq === 0) return;
    const at = { ...this.applied };
    this.attempted = at;
    const source = this.index.freeze(this.lastCrc);
    try {
      await this.init.disk.replaceFile(this.init.checkpointFile, runIndexCheckpointFrames(source, this.init.bounds.frameBytes), signal);
      this.checkpointed = at;
    } catch {
      // Open reads more of the log until a later checkpoint is written.
    } finally {
      source.release();
    }
  }

  /**
   * The checkpoint as an index, undefined when there is none, or why it
   * cannot be used: unreadable, damaged, made by another version, or not
   * a checkpoint of this log (its last record is past the log's end or
   * differs from the log's record of that seq).
   */
  private async readCheckpoint(): Promise<RunIndex | string | undefined> {
    const file = this.init.checkpointFile;
    let decoded: Awaited<ReturnType<typeof readRunIndexCheckpoint>>;
    try {
      const fh = await open(this.init.disk.abs(file), "r");
      try {
        decoded = await readRunIndexCheckpoint(fh, this.init.stats);
      } finally {
        await fh.close();
      }
    } catch (error) {
      return errorCode(error) === "ENOENT" ? undefined : `${file}: unreadable (${errorCode(error)})`;
    }
    if ("problem" in decoded) return `${file}: ${decoded.problem}`;
    const index = RunIndex.fromState(decoded.state);
    if ("problem" in index) return `${file}: ${index.problem}`;
    const lastSeq = index.lastSeq;
    if (lastSeq === 0) return index;
    if (BigInt(lastSeq) > this.log.lastSeq) return `${file}: it covers run record ${lastSeq}, past the log's end (${this.log.lastSeq})`;
    const [record] = await this.log.read(BigInt(lastSeq), 1);
    const header = record && decodeRunRecord(record.body);
    const ordinal = header ? index.ordinalOf(header.runId) : undefined;
    if (
      !record ||
      record.seq !== BigInt(lastSeq) ||
      crc32(record.body) !== decoded.lastCrc ||
      ordinal === undefined ||
      index.seqOf(ordinal) !== lastSeq
    ) {
      return `${file}: it does not match the log's run record ${lastSeq}`;
    }
    this.lastCrc = decoded.lastCrc;
    return index;
  }

  private async readOrdinal(ordinal: number): Promise<StoredRun | undefined> {
    for (;;) {
      const seq = this.index.seqOf(ordinal);
      if (seq === undefined) return undefined;
      const [record] = await this.log.read(BigInt(seq), 1);
      // A newer version became durable (and left `pending`) during the read: read that one.
      if (this.index.seqOf(ordinal) !== seq) continue;
      const header = record && decodeRunRecord(record.body);
      if (!header) return undefined;
      const pending = this.pending.get(header.runId);
      return { ordinal, run: pending ? cloneMessage(RunSchema, pending) : fromBinary(RunSchema, header.runBytes) };
    }
  }
}

/** True when `now` is at least `records` records or `bytes` bytes past `since`. */
function past(now: Progress, since: Progress, records: number, bytes: number): boolean {
  return now.records - since.records >= records || now.bytes - since.bytes >= bytes;
}
