import { cloneMessage } from "./message-clone.js";
import { RunSchema, type Run } from "../../gen/worker_runtime/v1/run_pb.js";

/**
 * Run versions a write failed to take (disk full): the store's (putRun) or
 * the worker's event log's (its runChanged). The session's state has moved
 * on — a run interrupted at start-up, a run that ended — while the store
 * still holds an older version (e.g. RUNNING), so reads answer from here
 * until a later write of that run succeeds; and once the store writes
 * again, the journal writes each version again (see owed-changes.ts).
 */
export class UnsavedRuns {
  private readonly versions = new Map<string, { write: number; run: Run }>();
  /** The newest write issued per run, while it is in flight. */
  private readonly inFlight = new Map<string, number>();
  private writes = 0;

  /**
   * Tracks one write of `version`, a copy of the run that nobody changes
   * (kept as it is if the write fails); resolves and rejects as `write` does.
   */
  track(version: Run, write: Promise<unknown>): Promise<void> {
    const n = ++this.writes;
    const runId = version.runId;
    this.inFlight.set(runId, n);
    const settled = (): void => {
      if (this.inFlight.get(runId) === n) this.inFlight.delete(runId);
    };
    return write.then(
      () => {
        settled();
        // A later successful write supersedes every earlier failure.
        if ((this.versions.get(runId)?.write ?? Infinity) < n) this.versions.delete(runId);
      },
      (error: unknown) => {
        settled();
        if ((this.versions.get(runId)?.write ?? 0) < n) this.versions.set(runId, { write: n, run: version });
        throw error;
      },
    );
  }

  /** The newest version of a run whose write failed, if any. */
  get(runId: string): Run | undefined {
    const unsaved = this.versions.get(runId);
    return unsaved && cloneMessage(RunSchema, unsaved.run);
  }

  /** Whether any run's version failed to be written. */
  get size(): number {
    return this.versions.size;
  }

  /**
   * The failed versions to write again, oldest failure first: those of runs
   * with no write in flight (a newer one settles the run either way, and
   * writing the older version after it would take the run backwards).
   * Each is the tracked copy itself, which nobody changes.
   */
  retryable(): Run[] {
    return [...this.versions.entries()].filter(([runId]) => !this.inFlight.has(runId)).map(([, { run }]) => run);
  }
}
