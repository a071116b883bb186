import * as path from "node:path";
import { StoreWriteError, type WorkerRecord } from "../../runtime/index.js";
import type { Disk } from "./disk.js";
import type { FileStoreStats } from "./file-store-stats.js";
import { workerDir } from "./layout.js";
import { RUN_CHECKPOINT_FILE, RunLog, type RunCheckpointBounds } from "./run-log.js";
import { SegmentedLog } from "./segmented-log.js";

/** Sizing and hooks shared by every worker log of the store. */
export interface LogSettings {
  segmentBytes: number;
  eventRetention: number;
  eventRetentionBytes: number;
  /** When and how run index checkpoints are written (run-log.ts). */
  runCheckpoint: RunCheckpointBounds;
  /** Told when a read finds a worker's stored data damaged (see FileStoreOptions). */
  onCorruption?: (workerId: string, message: string, hostDetail: string) => void;
}

/**
 * The files of one worker: its snapshot and its three logs (transcript,
 * events, runs). Snapshot writes are chained so that concurrent puts land
 * in call order.
 */
export class WorkerFiles {
  readonly dir: string;
  readonly transcript: SegmentedLog;
  readonly events: SegmentedLog;
  readonly runs: RunLog;
  private readonly runLog: SegmentedLog;
  /** Settles (never rejects) once every snapshot write chained so far is done. */
  private snapshotChain: Promise<void> = Promise.resolve();
  private snapshotsPending = 0;
  /** Set once a read found damage; see {@link quarantine}. */
  private quarantined: string | undefined;
  private snapshotFailures = 0;

  constructor(
    readonly workerId: string,
    public record: WorkerRecord,
    readonly creationIndex: number,
    disk: Disk,
    settings: LogSettings,
    stats: FileStoreStats,
  ) {
    this.dir = workerDir(workerId);
    const base = {
      disk,
      segmentBytes: settings.segmentBytes,
      stats,
      onCorruption: (message: string, hostDetail: string) => this.quarantine(message, hostDetail, settings),
    };
    this.transcript = new SegmentedLog({ ...base, dir: path.join(this.dir, "transcript") });
    this.events = new SegmentedLog({
      ...base,
      dir: path.join(this.dir, "events"),
      retainRecords: settings.eventRetention,
      retainBytes: settings.eventRetentionBytes,
      // An event is delivered once acknowledged, and it may describe a run,
      // transcript entry or snapshot written just before it (the core issues
      // those writes side by side). Writing it only after those are durable
      // means a crash can never leave an event that was seen pointing at
      // state that was lost, and refusing it when one of them failed means
      // no event is acknowledged for a write that did not happen.
      barrier: () => this.pendingWrites(),
    });
    let runs: RunLog | undefined;
    this.runLog = new SegmentedLog({
      ...base,
      dir: path.join(this.dir, "runs"),
      onDurable: (records) => runs?.onDurable(records),
    });
    runs = new RunLog(this.runLog, {
      disk,
      checkpointFile: path.join(this.dir, "runs", RUN_CHECKPOINT_FILE),
      stats,
      bounds: settings.runCheckpoint,
    });
    this.runs = runs;
  }

  /** The worker's logs, for open and drain. */
  get logs(): SegmentedLog[] {
    return [this.transcript, this.events, this.runLog];
  }

  /**
   * A read found damaged data in one of the worker's logs: every log of the
   * worker becomes read-only (so nothing new is built on state that cannot
   * be trusted), and the store's hook is told once.
   */
  private quarantine(message: string, hostDetail: string, settings: LogSettings): void {
    if (this.quarantined !== undefined) return;
    this.quarantined = message;
    for (const log of this.logs) log.markDamaged(message);
    settings.onCorruption?.(this.workerId, message, hostDetail);
  }

  /** Runs `write` after every earlier snapshot write of this worker. */
  chainSnapshot(write: () => Promise<void>): Promise<void> {
    this.snapshotsPending++;
    const next = this.snapshotChain.then(write);
    this.snapshotChain = next.then(
      () => void this.snapshotsPending--,
      () => {
        this.snapshotsPending--;
        this.snapshotFailures++;
      },
    );
    return next;
  }

  /**
   * Resolves once the transcript, run and snapshot writes accepted so far are
   * durable, and rejects if any of them fails; undefined when none is
   * pending. Writes accepted later are not waited for, so steady traffic
   * on the other logs cannot hold an event back.
   */
  pendingWrites(): Promise<void> | undefined {
    const waits: Promise<void>[] = [];
    for (const log of [this.transcript, this.runLog]) {
      if (log.acceptedPosition > log.lastSeq) waits.push(log.whenDurable(log.acceptedPosition));
    }
    if (this.snapshotsPending > 0) {
      const failuresBefore = this.snapshotFailures;
      waits.push(
        this.snapshotChain.then(() => {
          if (this.snapshotFailures !== failuresBefore) {
            throw new StoreWriteError(`a snapshot write of worker ${this.workerId} failed`);
          }
        }),
      );
    }
    if (waits.length === 0) return undefined;
    return Promise.all(waits).then(() => undefined);
  }

  /**
   * Waits for every queued write of this worker and stops checkpointing,
   * abandoning a run index checkpoint being built (at its next frame): the
   * worker is being deleted or the store closes.
   */
  async drain(): Promise<void> {
    await this.snapshotChain;
    await Promise.all(this.logs.map((log) => log.drain()));
    await this.runs.settle();
  }
}
