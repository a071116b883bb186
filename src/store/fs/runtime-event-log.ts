import { DiagnosticSeverity } from "../../../gen/worker_runtime/v1/runtime_pb.js";
import type { StoreDiagnostic } from "../../runtime/index.js";
import type { Disk } from "./disk.js";
import type { FileStoreStats } from "./file-store-stats.js";
import { RUNTIME_EVENTS_DIR } from "./layout.js";
import { SegmentedLog } from "./segmented-log.js";

/** Options for {@link openRuntimeEventLog}. */
export interface RuntimeEventLogInit {
  disk: Disk;
  segmentBytes: number;
  eventRetention: number;
  eventRetentionBytes: number;
  stats: FileStoreStats;
  /** Told when a read finds the log damaged after open. */
  onCorruption: (message: string, hostDetail: string) => void;
  /** Resolves once every run, transcript and snapshot write of any worker accepted so far is durable. */
  earlierWorkerWrites: () => Promise<void> | undefined;
}

/**
 * Opens the runtime-wide event log. A torn tail is repaired and reported as
 * a diagnostic; damage in the middle stops start-up, since watchers of the
 * whole runtime could not be served consistently from it.
 */
export async function openRuntimeEventLog(init: RuntimeEventLogInit): Promise<{ log: SegmentedLog; diagnostics: StoreDiagnostic[] }> {
  const log = new SegmentedLog({
    disk: init.disk,
    dir: RUNTIME_EVENTS_DIR,
    segmentBytes: init.segmentBytes,
    retainRecords: init.eventRetention,
    retainBytes: init.eventRetentionBytes,
    stats: init.stats,
    onCorruption: init.onCorruption,
    // A runtime event is delivered once acknowledged and describes a run or
    // worker snapshot the core wrote just before it, side by side (RunChanged
    // right after putRun, WorkerUpdated right after putWorker). Written only
    // after those are durable, a crash can never leave an event that was
    // seen pointing at a run or state that was lost; refused when one of
    // them failed, no event is acknowledged for a write that did not happen.
    barrier: init.earlierWorkerWrites,
  });
  const diagnostics: StoreDiagnostic[] = [];
  for (const problem of await log.open()) {
    if (problem.kind === "corrupt") {
      throw new Error(
        `${problem.file} in the data dir is damaged (${problem.detail}); the runtime-wide event log cannot be ` +
          `trusted. Move the ${RUNTIME_EVENTS_DIR}/ directory aside (watchers will re-sync) and start again.`,
      );
    }
    diagnostics.push({
      severity: DiagnosticSeverity.WARNING,
      code: "store.torn_tail_truncated",
      message: `${problem.file}: an unfinished write at the end of the log was truncated (${problem.detail})`,
    });
  }
  return { log, diagnostics };
}
