import { open, readdir, stat, unlink, type FileHandle } from "node:fs/promises";
import * as path from "node:path";
import { StoreSequenceError, StoreWriteError } from "../../runtime/index.js";
import { isTempName, type Disk } from "./disk.js";
import type { FileStoreStats } from "./file-store-stats.js";
import { readRange } from "./read-range.js";
import { OffsetList } from "./offset-list.js";
import { decodeFrame, encodeFrames, type LogRecord } from "./record-frame.js";
import { encodeSegmentIndex, readSegmentIndexCount, readSegmentIndexSlice } from "./segment-index.js";
import { scanSegment } from "./segment-scan.js";
import { StoreCorruptionError } from "./store-corruption-error.js";

/** Options for {@link SegmentedLog}. */
export interface SegmentedLogInit {
  disk: Disk;
  /** Directory of the log, relative to the data dir; must already exist. */
  dir: string;
  /** A segment is sealed and a new one started once it reaches this size. */
  segmentBytes: number;
  /** Keep at least this many newest records; older whole segments are deleted. */
  retainRecords?: number;
  stats: FileStoreStats;
  /**
   * Called once when a read finds a damaged record; the log is read-only
   * from then on. The message names the file relative to the data dir.
   */
  onCorruption?: (message: string) => void;
  /** Called with each batch once it is durable, before its appends resolve. */
  onDurable?: (records: readonly LogRecord[]) => void;
  /**
   * Called as each append is accepted; the promise it returns (if any) is
   * awaited before that append is written. It lets a log promise that other
   * writes accepted before it are durable: if the promise rejects, the
   * append and everything after it are refused without being written, so a
   * record never becomes durable on top of a write that failed.
   */
  barrier?: () => Promise<void> | undefined;
}

/** A problem found while opening a log. */
export interface LogProblem {
  kind: "torn" | "corrupt";
  /** File relative to the data dir. */
  file: string;
  detail: string;
}

interface Segment {
  firstSeq: bigint;
  count: number;
  size: number;
  /** Record offsets, kept only for the active (last) segment. */
  offsets?: OffsetList;
}

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
 * An append-only, seq-numbered log split into segment files
 * (`<first seq>.log` plus a sealed `<first seq>.idx`).
 *
 * Appends are group-committed: everything queued while one write+fdatasync
 * is in flight goes out together in the next one, and each append resolves
 * only after the fdatasync that covers it. After a failed write the file is
 * truncated back to the last durable byte before the next write, so a
 * partially written batch never survives, and nothing acknowledged is lost.
 */
export class SegmentedLog {
  private segments: Segment[] = [];
  /** Last seq accepted (durable or queued). */
  private acceptedSeq = 0n;
  /** Last seq made durable. */
  private durableSeq = 0n;
  private queue: PendingAppend[] = [];
  /** whenDurable() callers, in ascending seq order. */
  private waiters: DurableWaiter[] = [];
  private flushing: Promise<void> | undefined;
  private mustTruncate = false;
  private activeCreated = false;
  /** Set when open or a read found corruption; the log is then read-only. */
  private damage: string | undefined;

  constructor(private readonly init: SegmentedLogInit) {}

  /** Seq of the last durable record (0n when empty). */
  get lastSeq(): bigint {
    return this.durableSeq;
  }

  /** Oldest retained seq (lastSeq + 1 when nothing is retained). */
  get earliestSeq(): bigint {
    const first = this.segments[0];
    if (first === undefined) return this.durableSeq + 1n;
    return first.firstSeq;
  }

  /** Why the log is read-only, if it is. */
  get damaged(): string | undefined {
    return this.damage;
  }

  /** Makes the log read-only: appends accepted from now on are refused. */
  markDamaged(reason: string): void {
    this.damage ??= reason;
  }

  /**
   * Recovers the log: sealed segments are checked against their index, the
   * active one is scanned record by record; a torn tail is truncated and
   * reported, corruption is reported and leaves the log read-only.
   */
  async open(): Promise<LogProblem[]> {
    const { disk, dir, stats } = this.init;
    let names: string[];
    try {
      names = await readdir(disk.abs(dir));
    } catch (error) {
      if (isNotFound(error)) return [];
      throw error;
    }
    const problems: LogProblem[] = [];
    const logs = new Set(names.filter((n) => /^\d{20}\.log$/.test(n)));
    for (const name of names) {
      const orphanIndex = name.endsWith(".idx") && !logs.has(name.replace(/\.idx$/, ".log"));
      if (isTempName(name) || orphanIndex) await unlink(disk.abs(path.join(dir, name)));
    }
    const firsts = [...logs].map((n) => BigInt(n.slice(0, 20))).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    for (const [i, firstSeq] of firsts.entries()) {
      const rel = this.logName(firstSeq);
      const size = (await stat(disk.abs(rel))).size;
      const previous = this.segments.at(-1);
      if (previous && previous.firstSeq + BigInt(previous.count) !== firstSeq) {
        problems.push({ kind: "corrupt", file: rel, detail: `segment does not continue the previous one` });
        this.damage = `${rel}: segment does not continue the previous one`;
        break;
      }
      const isLast = i === firsts.length - 1;
      const count = isLast ? undefined : await readSegmentIndexCount(disk.abs(this.indexName(firstSeq)), size, stats);
      if (count !== undefined) {
        this.segments.push({ firstSeq, count, size });
        continue;
      }
      const buf = await readWhole(disk.abs(rel), stats);
      const scan = scanSegment(buf, firstSeq, () => stats.recordsRead++);
      const segment: Segment = { firstSeq, count: scan.offsets.length, size: scan.goodEnd, offsets: scan.offsets };
      this.segments.push(segment);
      if (scan.damage?.kind === "corrupt" || (scan.damage && !isLast)) {
        const detail = `${scan.damage.reason} at byte ${scan.damage.offset}`;
        problems.push({ kind: "corrupt", file: rel, detail });
        this.damage = `${rel}: ${detail}`;
        break;
      }
      if (scan.damage) {
        await this.truncateTo(rel, scan.goodEnd);
        const detail = `${scan.damage.reason} at byte ${scan.damage.offset}; ${buf.length - scan.goodEnd} bytes dropped`;
        problems.push({ kind: "torn", file: rel, detail });
      }
      if (!isLast) {
        await disk.replaceFile(this.indexName(firstSeq), encodeSegmentIndex(scan.offsets.view(), scan.goodEnd));
        delete segment.offsets;
      }
    }
    const last = this.segments.at(-1);
    if (last) {
      last.offsets ??= OffsetList.from(await this.readOffsets(last, 0, last.count).then((o) => o.slice(0, last.count)));
      this.durableSeq = last.firstSeq + BigInt(last.count) - 1n;
      this.activeCreated = true;
    }
    this.acceptedSeq = this.durableSeq;
    return problems;
  }

  /**
   * Queues records for the next group commit. The first seq must be the
   * log's last accepted seq + 1 and the rest must follow without gaps.
   */
  append(records: LogRecord[]): Promise<void> {
    if (this.damage !== undefined) {
      return Promise.reject(new StoreWriteError(`log is damaged and read-only (${this.damage})`));
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

  /** The next seq an append must start with. */
  get nextSeq(): bigint {
    return this.acceptedSeq + 1n;
  }

  /** Last seq accepted (durable or queued). */
  get acceptedPosition(): bigint {
    return this.acceptedSeq;
  }

  /**
   * Resolves once the record with seq `position` (at most
   * {@link acceptedPosition} when called) is durable; rejects if the write
   * that carries it fails. Unlike {@link drain}, it does not wait for
   * appends accepted later.
   */
  whenDurable(position: bigint): Promise<void> {
    if (position <= this.durableSeq) return Promise.resolve();
    if (position > this.acceptedSeq) {
      return Promise.reject(new Error(`seq ${position} was never accepted by ${this.init.dir}`));
    }
    return new Promise<void>((resolve, reject) => this.waiters.push({ seq: position, resolve, reject }));
  }

  /**
   * Durable records with seq in [from, from + count), clipped to what is
   * retained. Walks a copy of the segment list, since `prune()` may drop
   * segments while a read awaits I/O. If a segment vanished under the read,
   * the records already read are returned (they are contiguous), or, when
   * none were, the lookup restarts at the new earliest seq.
   */
  async read(from: bigint, count: number): Promise<LogRecord[]> {
    let segments = this.segments.slice();
    let seq = maxSeq(from, earliestOf(segments, this.durableSeq));
    const end = seq + BigInt(Math.max(0, count));
    const records: LogRecord[] = [];
    let i = segmentIndexOf(segments, seq);
    while (i < segments.length && seq < end && seq <= this.durableSeq) {
      const segment = segments[i++];
      if (segment === undefined) break;
      const segEnd = segment.firstSeq + BigInt(segment.count);
      const stop = end < segEnd ? end : segEnd;
      if (seq < segment.firstSeq) break;
      if (stop <= seq) continue;
      const got = await this.readFromSegment(segment, Number(seq - segment.firstSeq), Number(stop - seq));
      if (got === undefined) {
        if (records.length > 0) break;
        segments = this.segments.slice();
        seq = maxSeq(seq, earliestOf(segments, this.durableSeq));
        i = segmentIndexOf(segments, seq);
        continue;
      }
      records.push(...got);
      seq = stop;
    }
    return records;
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
    this.acceptedSeq = this.durableSeq;
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
    const { disk, stats } = this.init;
    if (this.damage !== undefined) throw new StoreWriteError(`log is damaged and read-only (${this.damage})`);
    let active = this.segments.at(-1);
    if (active && this.mustTruncate && this.activeCreated) {
      await this.truncateTo(this.logName(active.firstSeq), active.size);
    }
    this.mustTruncate = false;
    if (active === undefined || (active.size >= this.init.segmentBytes && active.count > 0)) {
      if (active) await this.seal(active);
      active = { firstSeq: this.durableSeq + 1n, count: 0, size: 0, offsets: new OffsetList() };
      this.segments.push(active);
      this.activeCreated = false;
    }
    const rel = this.logName(active.firstSeq);
    const { bytes, sizes } = encodeFrames(records);
    const created = !this.activeCreated;
    const fh = await open(disk.abs(rel), created ? "w" : "r+");
    try {
      await disk.write(fh, rel, bytes, active.size);
      await disk.sync(fh, rel);
      stats.logSyncs++;
    } finally {
      await fh.close();
    }
    if (created) await disk.syncDir(this.init.dir);
    this.activeCreated = true;
    const offsets = active.offsets ?? new OffsetList();
    let pos = active.size;
    for (const size of sizes) {
      offsets.push(pos);
      pos += size;
    }
    active.offsets = offsets;
    active.size = pos;
    active.count += records.length;
    this.durableSeq += BigInt(records.length);
    this.resolveWaiters();
    this.init.onDurable?.(records);
    // Pruning is housekeeping: the batch is already durable, so a failure
    // here must not fail the append; the next prune (or open) retries it.
    await this.prune().catch(() => undefined);
  }

  private resolveWaiters(): void {
    let n = 0;
    while (n < this.waiters.length && (this.waiters[n]?.seq ?? 0n) <= this.durableSeq) n++;
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
    const active = this.segments.at(-1);
    if (active === undefined) return;
    try {
      await this.truncateTo(this.logName(active.firstSeq), active.size);
      this.mustTruncate = false;
    } catch {
      // Retried before the next write.
    }
  }

  /** Cuts a segment back to `size` (a record boundary) and makes that durable. */
  private async truncateTo(rel: string, size: number): Promise<void> {
    const fh = await open(this.init.disk.abs(rel), "r+");
    try {
      await fh.truncate(size);
      await this.init.disk.sync(fh, rel);
    } finally {
      await fh.close();
    }
  }

  /** Writes the active segment's index so it can be read without a scan. */
  private async seal(segment: Segment): Promise<void> {
    const { disk } = this.init;
    await disk.replaceFile(this.indexName(segment.firstSeq), encodeSegmentIndex(segment.offsets?.view() ?? [], segment.size));
    delete segment.offsets;
  }

  /** Deletes whole segments that hold only records older than the retention bound. */
  private async prune(): Promise<void> {
    const keep = this.init.retainRecords;
    if (keep === undefined) return;
    while (this.segments.length > 1) {
      const first = this.segments[0];
      if (first === undefined || this.durableSeq - (first.firstSeq + BigInt(first.count) - 1n) < BigInt(keep)) break;
      this.segments.shift();
      await unlink(this.init.disk.abs(this.logName(first.firstSeq))).catch(ignoreNotFound);
      await unlink(this.init.disk.abs(this.indexName(first.firstSeq))).catch(ignoreNotFound);
    }
  }

  /** Offsets of records [from, from + n] (n + 1 values; the last is an end offset). */
  private async readOffsets(segment: Segment, from: number, n: number): Promise<number[]> {
    if (segment.offsets) {
      const slice = segment.offsets.slice(from, from + n + 1);
      if (slice.length === n) slice.push(segment.size);
      return slice;
    }
    return readSegmentIndexSlice(this.init.disk.abs(this.indexName(segment.firstSeq)), from, n, this.init.stats);
  }

  /** Reads n records starting at index `from` of a segment; undefined if it was pruned meanwhile. */
  private async readFromSegment(segment: Segment, from: number, n: number): Promise<LogRecord[] | undefined> {
    const { disk, stats } = this.init;
    const rel = this.logName(segment.firstSeq);
    let offsets: number[];
    let fh: FileHandle;
    try {
      offsets = await this.readOffsets(segment, from, n);
      fh = await open(disk.abs(rel), "r");
    } catch (error) {
      if (isNotFound(error) && !this.segments.includes(segment)) return undefined;
      throw error;
    }
    try {
      const start = offsets[0] ?? 0;
      const end = offsets[n] ?? start;
      const buf = await readRange(fh, start, end - start, stats);
      const records: LogRecord[] = [];
      let pos = 0;
      for (let i = 0; i < n; i++) {
        const frame = decodeFrame(buf, pos);
        const expected = segment.firstSeq + BigInt(from + i);
        if (frame.kind !== "ok" || frame.record.seq !== expected) {
          const message = `${rel}: record ${expected} is damaged`;
          if (this.damage === undefined) {
            this.damage = message;
            this.init.onCorruption?.(message);
          }
          throw new StoreCorruptionError(message);
        }
        stats.recordsRead++;
        records.push(frame.record);
        pos = frame.end;
      }
      return records;
    } finally {
      await fh.close();
    }
  }

  private logName(firstSeq: bigint): string {
    return path.join(this.init.dir, `${firstSeq.toString().padStart(20, "0")}.log`);
  }

  private indexName(firstSeq: bigint): string {
    return path.join(this.init.dir, `${firstSeq.toString().padStart(20, "0")}.idx`);
  }
}

async function readWhole(absPath: string, stats: FileStoreStats): Promise<Buffer> {
  const fh = await open(absPath, "r");
  try {
    const { size } = await fh.stat();
    return await readRange(fh, 0, size, stats);
  } finally {
    await fh.close();
  }
}

/** Index of the last segment starting at or before `seq` (0 when none does). */
function segmentIndexOf(segments: readonly Segment[], seq: bigint): number {
  let lo = 0;
  let hi = segments.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    const segment = segments[mid];
    if (segment && segment.firstSeq <= seq) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

function earliestOf(segments: readonly Segment[], durableSeq: bigint): bigint {
  return segments[0]?.firstSeq ?? durableSeq + 1n;
}

function maxSeq(a: bigint, b: bigint): bigint {
  return a > b ? a : b;
}

/** The first append whose barrier rejected, with the reason; undefined when none did. */
async function firstRefused(batch: readonly PendingAppend[]): Promise<{ index: number; error: unknown } | undefined> {
  if (!batch.some((p) => p.barrier !== undefined)) return undefined;
  const outcomes = await Promise.allSettled(batch.map((p) => p.barrier));
  const index = outcomes.findIndex((o) => o.status === "rejected");
  const outcome = outcomes[index];
  return outcome?.status === "rejected" ? { index, error: outcome.reason } : undefined;
}

function isNotFound(error: unknown): boolean {
  return error instanceof Error && "code" in error && error.code === "ENOENT";
}

function ignoreNotFound(error: unknown): void {
  if (!isNotFound(error)) throw error;
}
