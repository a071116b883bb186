import { cloneMessage } from "./message-clone.js";
import { RunSchema, type Run } from "../../gen/worker_runtime/v1/run_pb.js";

/**
 * Run versions the store failed to write (disk full). The session's state
 * has moved on — a run interrupted at start-up, a run that ended — while
 * the store still holds an older version (e.g. RUNNING), so reads answer
 * from here until a later write of that run succeeds. Nothing is retried:
 * a restart interrupts runs the store still has unfinished.
 */
export class UnsavedRuns {
  private readonly versions = new Map<string, { write: number; run: Run }>();
  private writes = 0;

  /**
   * Tracks one write of `version`, a copy of the run that nobody changes
   * (kept as it is if the write fails); resolves and rejects as `write` does.
   */
  track(version: Run, write: Promise<void>): Promise<void> {
    const n = ++this.writes;
    const runId = version.runId;
    return write.then(
      () => {
        // A later successful write supersedes every earlier failure.
        if ((this.versions.get(runId)?.write ?? Infinity) < n) this.versions.delete(runId);
      },
      (error: unknown) => {
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
}
