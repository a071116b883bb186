import { GroupCommit } from "./group-commit.js";
import type { LogRecord } from "./record-frame.js";
import type { LogState } from "./segment.js";
import { SegmentReader } from "./segment-reader.js";
import { recoverSegments } from "./segment-recovery.js";
import type { LogProblem, SegmentedLogInit } from "./segmented-log-init.js";

export type { LogProblem, SegmentedLogInit } from "./segmented-log-init.js";

/**
 * An append-only, seq-numbered log split into segment files
 * (`<first seq>.log` plus a sealed `<first seq>.idx`).
 *
 * This is the log's face; the work is in three parts sharing one
 * {@link LogState}: recovery at open (segment-recovery.ts), the group
 * commit that writes, seals and prunes (group-commit.ts), and the reader
 * (segment-reader.ts). Appends resolve only once durable; a partially
 * written batch never survives, and nothing acknowledged is lost.
 */
export class SegmentedLog {
  private readonly state: LogState = { segments: [], durableSeq: 0n, damage: undefined, activeCreated: false };
  private readonly reader: SegmentReader;
  private readonly commit: GroupCommit;

  constructor(private readonly init: SegmentedLogInit) {
    this.reader = new SegmentReader(init, this.state);
    this.commit = new GroupCommit(init, this.state);
  }

  /** Seq of the last durable record (0n when empty). */
  get lastSeq(): bigint {
    return this.state.durableSeq;
  }

  /** Oldest retained seq (lastSeq + 1 when nothing is retained). */
  get earliestSeq(): bigint {
    const first = this.state.segments[0];
    if (first === undefined) return this.state.durableSeq + 1n;
    return first.firstSeq;
  }

  /** Why the log is read-only, if it is. */
  get damaged(): string | undefined {
    return this.state.damage;
  }

  /**
   * The last readable seq when the open found damage that cut the log
   * short (acknowledged records after it cannot be read); undefined when
   * the log reads to its end. Damage a read finds later leaves a hole, not
   * a cut: that read fails instead.
   */
  get readableThroughSeq(): bigint | undefined {
    return this.state.cutByDamage ? this.state.durableSeq : undefined;
  }

  /** Makes the log read-only: appends accepted from now on are refused. */
  markDamaged(reason: string): void {
    this.state.damage ??= reason;
  }

  /**
   * Recovers the log: sealed segments are checked against their index, the
   * active one is scanned record by record; a torn tail is truncated and
   * reported, corruption is reported and leaves the log read-only.
   */
  async open(): Promise<LogProblem[]> {
    const problems = await recoverSegments(this.init, this.state);
    this.commit.resume();
    return problems;
  }

  /**
   * Queues records for the next group commit. The first seq must be the
   * log's last accepted seq + 1 and the rest must follow without gaps.
   */
  append(records: LogRecord[]): Promise<void> {
    return this.commit.append(records);
  }

  /** The next seq an append must start with. */
  get nextSeq(): bigint {
    return this.commit.acceptedPosition + 1n;
  }

  /** Last seq accepted (durable or queued). */
  get acceptedPosition(): bigint {
    return this.commit.acceptedPosition;
  }

  /**
   * Resolves once the record with seq `position` (at most
   * {@link acceptedPosition} when called) is durable; rejects if the write
   * that carries it fails. Unlike {@link drain}, it does not wait for
   * appends accepted later.
   */
  whenDurable(position: bigint): Promise<void> {
    return this.commit.whenDurable(position);
  }

  /**
   * Durable records with seq in [from, from + count), clipped to what is
   * retained; fewer (one at least) where they would pass `maxBytes`.
   */
  read(from: bigint, count: number, maxBytes?: number): Promise<LogRecord[]> {
    return this.reader.read(from, count, maxBytes);
  }

  /** Waits for queued appends to finish (successfully or not). */
  drain(): Promise<void> {
    return this.commit.drain();
  }
}
