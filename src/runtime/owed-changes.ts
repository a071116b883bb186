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
  /** The worker's snapshot write. */
  readonly snapshot = new FailedWrite();
  /** The worker's workerChanged announcement. */
  readonly workerAnnouncement = new FailedWrite();

  /** Whether anything is owed. */
  get any(): boolean {
    return this.unsavedRuns.size > 0 || this.unannouncedRuns.size > 0 || this.worker;
  }

  /** Whether the worker's snapshot or its announcement is owed (both are made again together). */
  get worker(): boolean {
    return this.snapshot.owed || this.workerAnnouncement.owed;
  }
}
