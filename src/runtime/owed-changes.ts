import { cloneMessage } from "./message-clone.js";
import { RunSchema, type Run } from "../../gen/worker_runtime/v1/run_pb.js";
import type { InterruptedBy } from "./interrupted-notice.js";
import { UnsavedRuns } from "./unsaved-runs.js";

/**
 * Whether the newest settled write of one thing (a worker's snapshot, or
 * its announcement) failed, with no later one succeeding since.
 */
class FailedWrite {
  private writes = 0;
  private failed = 0;
  private inFlight = 0;

  /** Tracks one write; resolves and rejects as `write` does. */
  track<T>(write: Promise<T>): Promise<T> {
    const n = ++this.writes;
    this.inFlight++;
    return write.then(
      (value) => {
        this.inFlight--;
        if (this.failed < n) this.failed = 0;
        return value;
      },
      (error: unknown) => {
        this.inFlight--;
        this.failed = Math.max(this.failed, n);
        throw error;
      },
    );
  }

  /** A write failed and none succeeded after it, and none is in flight (it would settle the matter). */
  get owed(): boolean {
    return this.failed > 0 && this.inFlight === 0;
  }
}

/**
 * Interrupted runs whose record waits for their `run.interrupted` notice
 * (interrupted-notice.ts): the record is written only once the notice is
 * durable, so a run stored ended always has it, and a restart that finds
 * the run unfinished knows to look for it. Reads answer from here
 * meanwhile; a notice that failed is written again, then the record.
 */
class WithheldRuns {
  private readonly runs = new Map<string, { run: Run; by: InterruptedBy; inFlight: boolean }>();

  /** Holds `run` (a copy nobody changes) while its notice is written. */
  hold(run: Run, by: InterruptedBy): void {
    this.runs.set(run.runId, { run, by, inFlight: true });
  }

  /** Its notice failed: held until written again. */
  failed(runId: string): void {
    const held = this.runs.get(runId);
    if (held) held.inFlight = false;
  }

  /** Its notice is durable and its record issued: the store answers for it now. */
  release(runId: string): void {
    this.runs.delete(runId);
  }

  /** The held version of a run, if any. */
  get(runId: string): Run | undefined {
    const held = this.runs.get(runId);
    return held && cloneMessage(RunSchema, held.run);
  }

  get size(): number {
    return this.runs.size;
  }

  /** The runs whose notice failed and is not being written again. */
  retryable(): { run: Run; by: InterruptedBy }[] {
    return [...this.runs.values()].filter((held) => !held.inFlight);
  }
}

/**
 * What a worker's journal owes after writes the store failed to take (disk
 * full, read-only): run versions the store does not have, run changes and
 * worker changes its watchers never heard of (a durable event that cannot
 * be written is rolled back, never delivered). The journal writes and
 * announces them again once the store writes (see WorkerJournal.catchUp),
 * so a watch resumed from its last cursor sees a lost run end once, in
 * order, and snapshots (cut from delivered events) stop showing it open.
 */
export class OwedChanges {
  /** Run versions the store failed to write: reads answer from here too. */
  readonly unsavedRuns = new UnsavedRuns();
  /** Run versions whose runChanged event could not be written. */
  readonly unannouncedRuns = new UnsavedRuns();
  /** Interrupted runs whose record waits for their notice. */
  readonly withheldRuns = new WithheldRuns();
  /** The worker's snapshot write. */
  readonly snapshot = new FailedWrite();
  /** The worker's workerChanged announcement. */
  readonly workerAnnouncement = new FailedWrite();

  /** Whether anything is owed. */
  get any(): boolean {
    return this.unsavedRuns.size > 0 || this.unannouncedRuns.size > 0 || this.withheldRuns.size > 0 || this.worker;
  }

  /** Whether the worker's snapshot or its announcement is owed (both are made again together). */
  get worker(): boolean {
    return this.snapshot.owed || this.workerAnnouncement.owed;
  }
}
