import { RunStatus } from "../../../gen/worker_runtime/v1/run_pb.js";
import { DEFAULT_LIMITS, RequestIdMemory } from "../../runtime/index.js";
import type { RunIndexSource } from "./run-index-checkpoint.js";
import type { RunRecord } from "./run-record.js";

/** Request ids handed back at open for SendInput idempotency: as many as the core keeps by default. */
export const RECENT_REQUEST_IDS = DEFAULT_LIMITS.requestIdMemory;

const UNFINISHED = new Set<number>([RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.AWAITING_APPROVAL]);

/** A remembered SendInput request id, as open hands it to the core. */
export interface RecentRequest {
  requestId: string;
  runId: string;
  fingerprint: string;
}

/**
 * The whole state of a {@link RunIndex} as plain data: what a run index
 * checkpoint holds (run-index-checkpoint.ts). Runs are named by ordinal.
 */
export interface RunIndexState {
  /** Seq of the last run record applied (0 when none). */
  lastSeq: number;
  /** Run ids by ordinal - 1. */
  runIds: string[];
  /** Log seq of each run's latest version, by ordinal - 1. */
  latest: number[];
  /** Ordinals of the unfinished runs, in the order open hands them back. */
  unfinished: number[];
  /** Remembered request ids, oldest first. */
  requests: Array<{ requestId: string; ordinal: number; fingerprint: string }>;
}

/**
 * What a worker's run log knows without reading runs: run id → ordinal,
 * ordinal → seq of the latest version, which runs are unfinished (in the
 * order they became so) and the recent request ids. It is the fold of the
 * log's records in order ({@link apply}), so applying the records after a
 * checkpoint to the checkpoint's state gives exactly what applying the
 * whole log gives.
 */
export class RunIndex {
  private readonly byId = new Map<string, number>();
  private readonly latest: number[] = [];
  /** Run id → ordinal; Map order is the order open hands unfinished runs back. */
  private readonly unfinished = new Map<string, number>();
  private readonly requests = new RequestIdMemory<RecentRequest>(RECENT_REQUEST_IDS);
  private applied = 0;
  /** The view a checkpoint is being encoded from, if any: the seqs it needs that records applied since replaced. */
  private frozen: { runCount: number; replaced: Map<number, number> } | undefined;

  /** Seq of the last record applied (0 when none). */
  get lastSeq(): number {
    return this.applied;
  }

  /** Number of runs. */
  get count(): number {
    return this.latest.length;
  }

  /** The ordinal of a run, if it has one. */
  ordinalOf(runId: string): number | undefined {
    return this.byId.get(runId);
  }

  /** The log seq of a run's latest version, by ordinal. */
  seqOf(ordinal: number): number | undefined {
    return this.latest[ordinal - 1];
  }

  /** Folds in the next record of the log (seq `seq`). */
  apply(record: Omit<RunRecord, "runBytes">, seq: number): void {
    const { runId, requestId, fingerprint } = record;
    let ordinal = this.byId.get(runId);
    if (ordinal === undefined) {
      ordinal = this.latest.push(seq);
      this.byId.set(runId, ordinal);
    } else {
      const frozen = this.frozen;
      if (frozen && ordinal <= frozen.runCount && !frozen.replaced.has(ordinal))
        frozen.replaced.set(ordinal, this.latest[ordinal - 1] ?? 0);
      this.latest[ordinal - 1] = seq;
    }
    // Map.set keeps the position of a run that was already unfinished.
    if (UNFINISHED.has(record.status)) this.unfinished.set(runId, ordinal);
    else this.unfinished.delete(runId);
    if (requestId !== "") this.requests.remember(requestId, { requestId, runId, fingerprint });
    this.applied = seq;
  }

  /** Ordinals of the runs that are QUEUED, RUNNING or AWAITING_APPROVAL. */
  unfinishedOrdinals(): number[] {
    return [...this.unfinished.values()];
  }

  /** The remembered request ids, oldest first. */
  recentRequests(): RecentRequest[] {
    return this.requests.values();
  }

  /**
   * The index as it is now, for a checkpoint encoded a frame at a time while
   * records keep being applied: the unfinished runs and request ids (a few)
   * are copied, the runs are read lazily by ordinal, and a run whose latest
   * version changes meanwhile keeps its old seq in the view (copy on write),
   * so freezing costs O(1) in the number of runs. One view at a time; the
   * caller releases it when done.
   */
  freeze(lastCrc: number): RunIndexSource & { release(): void } {
    if (this.frozen) throw new Error("run index: a checkpoint is already being encoded");
    const frozen = { runCount: this.latest.length, replaced: new Map<number, number>() };
    this.frozen = frozen;
    const { byId, latest } = this;
    return {
      lastSeq: this.applied,
      lastCrc,
      runCount: frozen.runCount,
      *runs() {
        let ordinal = 0;
        // A Map's iterator goes on past entries added after it was made: stop at the frozen count.
        for (const runId of byId.keys()) {
          if (++ordinal > frozen.runCount) return;
          yield [runId, frozen.replaced.get(ordinal) ?? latest[ordinal - 1] ?? 0] as const;
        }
      },
      unfinished: this.unfinishedOrdinals(),
      requests: this.requests.values().map(({ requestId, runId, fingerprint }) => ({
        requestId,
        ordinal: this.byId.get(runId) ?? 0,
        fingerprint,
      })),
      release: () => {
        if (this.frozen === frozen) this.frozen = undefined;
      },
    };
  }

  /**
   * Rebuilds an index from a checkpoint's state, or says why the state cannot
   * be the fold of a log (then the caller rebuilds from the log instead).
   */
  static fromState(state: RunIndexState): RunIndex | { problem: string } {
    const index = new RunIndex();
    const { lastSeq, runIds, latest, unfinished, requests } = state;
    if (!Number.isSafeInteger(lastSeq) || lastSeq < 0 || runIds.length !== latest.length || runIds.length > lastSeq) {
      return { problem: "its header does not fit its runs" };
    }
    const seqs = new Set<number>();
    for (const [i, runId] of runIds.entries()) {
      const seq = latest[i] ?? 0;
      if (runId === "" || index.byId.has(runId)) return { problem: `run ${i + 1} has an empty or repeated id` };
      if (!Number.isSafeInteger(seq) || seq < 1 || seq > lastSeq || seqs.has(seq)) return { problem: `run ${i + 1} has an impossible seq` };
      seqs.add(seq);
      index.byId.set(runId, index.latest.push(seq));
    }
    // The last record applied is the latest version of its run.
    if (lastSeq > 0 && !seqs.has(lastSeq)) return { problem: `no run ends at its last record ${lastSeq}` };
    for (const ordinal of unfinished) {
      const runId = runIds[ordinal - 1];
      if (runId === undefined || index.unfinished.has(runId)) return { problem: `unfinished run ${ordinal} is not a run` };
      index.unfinished.set(runId, ordinal);
    }
    if (requests.length > RECENT_REQUEST_IDS) return { problem: "it remembers more request ids than are kept" };
    for (const { requestId, ordinal, fingerprint } of requests) {
      const runId = runIds[ordinal - 1];
      if (runId === undefined || requestId === "" || index.requests.get(requestId))
        return { problem: `request id of run ${ordinal} is not valid` };
      index.requests.remember(requestId, { requestId, runId, fingerprint });
    }
    index.applied = lastSeq;
    return index;
  }
}
