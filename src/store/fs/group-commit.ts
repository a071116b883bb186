import { open, unlink } from "node:fs/promises";
import { StoreSequenceError, StoreWriteError } from "../../runtime/index.js";
import { OffsetList } from "./offset-list.js";
import { encodeFrames, type LogRecord } from "./record-frame.js";
import { indexName, isNotFound, logName, truncateSegment, type LogState, type Segment } from "./segment.js";
import { encodeSegmentIndex } from "./segment-index.js";
import type { SegmentedLogInit } from "./segmented-log-init.js";

interface PendingAppend {
  records: LogRecord[];
  /** See {@link SegmentedLogInit.barrier}. */
  barrier: Promise<void> | undefined;
  resolve: () => void;
  reject: (error: Error) => void;
}

interface DurableWaiter {
  seq: bigint;
  resolve: () => void;
  reject: (error: Error) => void;
}

/**
 * The write side of a SegmentedLog. Appends are group-committed: everything
 * queued while one write+fdatasync is in flight goes out together in the
 * next one, and each append resolves only after the fdatasync that covers
 * it. After a failed write the file is truncated back to the last durable
 * byte before the next write, so a partially written batch never survives,
 * and nothing acknowledged is lost. Full segments are sealed, and segments
 * past the retention bound deleted, here too.
 */
export class GroupCommit {
  /** Last seq accepted (durable or queued). */
  private acceptedSeq = 0n;
  private queue: PendingAppend[] = [];
  /** whenDurable() callers, in ascending seq order. */
  private waiters: DurableWaiter[] = [];
  private flushing: Promise<void> | undefined;
  private mustTruncate = false;

  constructor(
    private readonly init: SegmentedLogInit,
    private readonly state: LogState,
  ) {}

  /** Starts accepting after what recovery found durable. */
  resume(): void {
    this.acceptedSeq = this.state.durableSeq;
  }

  /** Last seq accepted (durable or queued). */
  get acceptedPosition(): bigint {
    return this.acceptedSeq;
  }

  /**
   * Queues records for the next group commit. The first seq must be the
   * log's last accepted seq + 1 and the rest must follow without gaps.
   */
  append(records: LogRecord[]): Promise<void> {
    if (this.state.damage !== undefined) {
      return Promise.reject(new StoreWriteError(`log is damaged and read-only (${this.state.damage})`));
    }
    let expected = this.acceptedSeq + 1n;
    for (const record of records) {
      if (record.seq !== expected) {
        return Promise.reject(new StoreSequenceError(`expected seq ${expected}, got ${record.seq}`));
      }
      expected++;
    }
    if (records.length === 0) return this.flushing ?? Promise.resolve();
    this.acceptedSeq = expected - 1n;
    const barrier = this.init.barrier?.();
    // Observed in the flush loop, or dropped when an earlier failure refuses this append.
    barrier?.catch(() => undefined);
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ records, barrier, resolve, reject });
      this.flushing ??= this.flushLoop();
    });
  }

  /**
   * Resolves once the record with seq `position` (at most
   * {@link acceptedPosition} when called) is durable; rejects if the write
   * that carries it fails. Unlike {@link drain}, it does not wait for
   * appends accepted later.
   */
  whenDurable(position: bigint): Promise<void> {
    if (position <= this.state.durableSeq) return Promise.resolve();
    if (position > this.acceptedSeq) {
      return Promise.reject(new Error(`seq ${position} was never accepted by ${this.init.dir}`));
    }
    return new Promise<void>((resolve, reject) => this.waiters.push({ seq: position, resolve, reject }));
  }

  /** Waits for queued appends to finish (successfully or not). */
  async drain(): Promise<void> {
    while (this.flushing) await this.flushing;
  }

  private async flushLoop(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        const batch = this.queue;
        this.queue = [];
        const refused = await firstRefused(batch);
        const ready = refused ? batch.slice(0, refused.index) : batch;
        try {
          if (ready.length > 0) await this.writeBatch(ready.flatMap((p) => p.records));
        } catch (error) {
          this.mustTruncate = true;
          this.fail(batch, new StoreWriteError(`append to ${this.init.dir} failed`, { cause: error }));
          await this.dropFailedBytes();
          continue;
        }
        for (const p of ready) p.resolve();
        if (refused) {
          const failure = new StoreWriteError(`append to ${this.init.dir} refused: a write it depends on failed`, {
            cause: refused.error,
          });
          this.fail(batch.slice(refused.index), failure);
        }
      }
    } finally {
      this.flushing = undefined;
    }
  }

  /**
   * Rejects appends that were not written, and everything queued after them
   * (their seqs no longer follow), rolling the accepted seq back.
   */
  private fail(appends: PendingAppend[], failure: StoreWriteError): void {
    this.acceptedSeq = this.state.durableSeq;
    for (const p of appends) p.reject(failure);
    const queued = this.queue;
    this.queue = [];
    for (const p of queued) {
      p.reject(new StoreSequenceError(`an earlier append to ${this.init.dir} failed; seq rolled back`));
    }
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w.reject(failure);
  }

  private async writeBatch(records: LogRecord[]): Promise<void> {
    const { disk, stats, dir } = this.init;
    const state = this.state;
    if (state.damage !== undefined) throw new StoreWriteError(`log is damaged and read-only (${state.damage})`);
    let active = state.segments.at(-1);
    if (active && this.mustTruncate && state.activeCreated) {
      await truncateSegment(disk, logName(dir, active.firstSeq), active.size);
    }
    this.mustTruncate = false;
    if (active === undefined || (active.size >= this.init.segmentBytes && active.count > 0)) {
      if (active) await this.seal(active);
      active = { firstSeq: state.durableSeq + 1n, count: 0, size: 0, offsets: new OffsetList() };
      state.segments.push(active);
      state.activeCreated = false;
    }
    const rel = logName(dir, active.firstSeq);
    const { bytes, sizes } = encodeFrames(records);
    const created = !state.activeCreated;
    const fh = await open(disk.abs(rel), created ? "w" : "r+");
    const started = performance.now();
    try {
      await disk.write(fh, rel, bytes, active.size);
      await disk.sync(fh, rel);
      stats.logSyncs++;
      disk.metrics.storeGroupCommitted(records.length, (performance.now() - started) / 1000);
    } finally {
      await fh.close();
    }
    if (created) await disk.syncDir(dir);
    state.activeCreated = true;
    const offsets = active.offsets ?? new OffsetList();
    let pos = active.size;
    for (const size of sizes) {
      offsets.push(pos);
      pos += size;
    }
    active.offsets = offsets;
    active.size = pos;
    active.count += records.length;
    state.durableSeq += BigInt(records.length);
    this.resolveWaiters();
    this.init.onDurable?.(records);
    // Pruning is housekeeping: the batch is already durable, so a failure
    // here must not fail the append; the next prune (or open) retries it.
    await this.prune().catch(() => undefined);
  }

  private resolveWaiters(): void {
    let n = 0;
    while (n < this.waiters.length && (this.waiters[n]?.seq ?? 0n) <= this.state.durableSeq) n++;
    if (n === 0) return;
    for (const w of this.waiters.splice(0, n)) w.resolve();
  }

  /**
   * Cuts off what a failed batch left in the file right away, so that it
   * cannot reappear as durable after a restart (a short write on ENOSPC, or
   * a whole batch whose fdatasync failed). Best effort: if it fails too,
   * `mustTruncate` stays set and the next write retries first.
   */
  private async dropFailedBytes(): Promise<void> {
    const active = this.state.segments.at(-1);
    if (active === undefined) return;
    try {
      await truncateSegment(this.init.disk, logName(this.init.dir, active.firstSeq), active.size);
      this.mustTruncate = false;
    } catch {
      // Retried before the next write.
    }
  }

  /** Writes the active segment's index so it can be read without a scan. */
  private async seal(segment: Segment): Promise<void> {
    const { disk, dir } = this.init;
    const index = encodeSegmentIndex(segment.offsets?.view() ?? [], segment.size);
    await disk.replaceFile(indexName(dir, segment.firstSeq), index);
    delete segment.offsets;
  }

  /**
   * Deletes whole segments that hold only records older than a retention
   * bound: the newest `retainRecords` records, or the newest `retainBytes`
   * bytes, are kept without them.
   */
  private async prune(): Promise<void> {
    const { retainRecords, retainBytes, disk, dir } = this.init;
    if (retainRecords === undefined && retainBytes === undefined) return;
    const { segments } = this.state;
    /** Bytes of the segments after the first. */
    let laterBytes = segments.reduce((sum, segment) => sum + segment.size, 0) - (segments[0]?.size ?? 0);
    while (segments.length > 1) {
      const first = segments[0];
      if (first === undefined) break;
      const lastOfFirst = first.firstSeq + BigInt(first.count) - 1n;
      const pastCount = retainRecords !== undefined && this.state.durableSeq - lastOfFirst >= BigInt(retainRecords);
      const pastBytes = retainBytes !== undefined && laterBytes >= retainBytes;
      if (!pastCount && !pastBytes) break;
      segments.shift();
      laterBytes -= segments[0]?.size ?? 0;
      await unlink(disk.abs(logName(dir, first.firstSeq))).catch(ignoreNotFound);
      await unlink(disk.abs(indexName(dir, first.firstSeq))).catch(ignoreNotFound);
    }
  }
}

/** The first append whose barrier rejected, with the reason; undefined when none did. */
async function firstRefused(batch: readonly PendingAppend[]): Promise<{ index: number; error: unknown } | undefined> {
  if (!batch.some((p) => p.barrier !== undefined)) return undefined;
  const outcomes = await Promise.allSettled(batch.map((p) => p.barrier));
  const index = outcomes.findIndex((o) => o.status === "rejected");
  const outcome = outcomes[index];
  return outcome?.status === "rejected" ? { index, error: outcome.reason } : undefined;
}

function ignoreNotFound(error: unknown): void {
  if (!isNotFound(error)) throw error;
}
