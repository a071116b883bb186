import * as path from "node:path";
import type { WorkerRecord } from "../../runtime/store.js";
import type { Disk } from "./disk.js";
import type { FileStoreStats } from "./file-store-stats.js";
import { workerDir } from "./layout.js";
import { RunLog } from "./run-log.js";
import { SegmentedLog } from "./segmented-log.js";

/** Sizing shared by every log of the store. */
export interface LogSizing {
  segmentBytes: number;
  eventRetention: number;
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
  private snapshotChain: Promise<void> = Promise.resolve();

  constructor(
    readonly workerId: string,
    public record: WorkerRecord,
    readonly creationIndex: number,
    disk: Disk,
    sizing: LogSizing,
    stats: FileStoreStats,
  ) {
    this.dir = workerDir(workerId);
    const base = { disk, segmentBytes: sizing.segmentBytes, stats };
    this.transcript = new SegmentedLog({ ...base, dir: path.join(this.dir, "transcript") });
    this.events = new SegmentedLog({
      ...base,
      dir: path.join(this.dir, "events"),
      retainRecords: sizing.eventRetention,
      // An event is delivered once acknowledged, and it may describe a run,
      // transcript entry or snapshot written just before it (the core issues
      // those writes side by side). Acknowledging it only after they are
      // durable too means a crash can never leave an event that was seen
      // pointing at state that was lost.
      beforeAck: () => this.settleOtherWrites(),
    });
    let runs: RunLog | undefined;
    this.runLog = new SegmentedLog({
      ...base,
      dir: path.join(this.dir, "runs"),
      onDurable: (records) => runs?.onDurable(records),
    });
    runs = new RunLog(this.runLog);
    this.runs = runs;
  }

  /** The worker's logs, for open and drain. */
  get logs(): SegmentedLog[] {
    return [this.transcript, this.events, this.runLog];
  }

  /** Runs `write` after every earlier snapshot write of this worker. */
  chainSnapshot(write: () => Promise<void>): Promise<void> {
    const next = this.snapshotChain.then(write);
    this.snapshotChain = next.catch(() => undefined);
    return next;
  }

  private async settleOtherWrites(): Promise<void> {
    await Promise.all([this.snapshotChain, this.transcript.drain(), this.runLog.drain()].map((p) => p.catch(() => undefined)));
  }

  /** Waits for every queued write of this worker. */
  async drain(): Promise<void> {
    await this.snapshotChain;
    await Promise.all(this.logs.map((log) => log.drain()));
  }
}
