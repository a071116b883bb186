import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { type Run, RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import type { Api } from "./api.js";

/** Runs per ListRuns page: a history page of 30 entries belongs to at most 30 runs. */
const RUNS_PAGE = 30;

/**
 * The statuses of a worker's runs the chat shows entries of, so that a run
 * that ended cut (CANCELLED by Stop, INTERRUPTED by a restart) gets its mark.
 * The watch tells each run's changes as they happen; for history, ListRuns is
 * read newest first, a page at a time, only as far back as the entries read
 * reach. (The chat used to read the first 100 cut runs once: an older one was
 * never marked, however far the reader scrolled.) One per re-sync of the chat:
 * a page read for an older instance is stale.
 */
export class RunStatuses {
  private readonly statuses = new Map<string, RunStatus>();
  /** The next ListRuns page; undefined once every run was listed. */
  private pageToken: string | undefined = "";

  constructor(
    private readonly api: Api,
    private readonly worker: WorkerRef,
    private readonly signal: AbortSignal,
  ) {}

  /** Records a run's status from the watch (newer than any list); true when this made it cut. */
  note(run: Run): boolean {
    const wasCut = this.cut(run.runId) !== undefined;
    this.statuses.set(run.runId, run.status);
    return !wasCut && this.cut(run.runId) !== undefined;
  }

  /** CANCELLED or INTERRUPTED when the run ended cut, else undefined. */
  cut(runId: string): RunStatus | undefined {
    const status = this.statuses.get(runId);
    return status === RunStatus.CANCELLED || status === RunStatus.INTERRUPTED ? status : undefined;
  }

  /** Whether the run is known to have ended (any way), from the watch or a list. */
  ended(runId: string): boolean {
    const status = this.statuses.get(runId);
    return status !== undefined && status >= RunStatus.COMPLETED;
  }

  /** Reads ListRuns pages until every one of `runIds` is known, or the worker has no more runs. */
  async cover(runIds: Iterable<string>): Promise<void> {
    const missing = new Set([...runIds].filter((runId) => runId !== "" && !this.statuses.has(runId)));
    while (missing.size > 0 && this.pageToken !== undefined) {
      const page = await this.api.interaction.listRuns(
        { worker: this.worker, pageSize: RUNS_PAGE, pageToken: this.pageToken },
        { signal: this.signal },
      );
      for (const run of page.runs) {
        // The watch may already have told a newer status.
        if (!this.statuses.has(run.runId)) this.statuses.set(run.runId, run.status);
        missing.delete(run.runId);
      }
      this.pageToken = page.nextPageToken || undefined;
    }
  }
}
