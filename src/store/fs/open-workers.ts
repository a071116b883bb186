import { readdir, rm } from "node:fs/promises";
import * as path from "node:path";
import { DiagnosticSeverity } from "../../../gen/worker_runtime/v1/runtime_pb.js";
import type { RestoredWorker, StoreDiagnostic } from "../../runtime/index.js";
import { type Disk, errorCode } from "./disk.js";
import type { FileStoreStats } from "./file-store-stats.js";
import { DELETING_PREFIX, STAGING_PREFIX, WORKERS_DIR, workerDir, workerDirName, workerIdFromDirName } from "./layout.js";
import { sweepTempFiles } from "./temp-sweep.js";
import type { LogSettings, WorkerFiles } from "./worker-files.js";
import { restoreWorker } from "./worker-restore.js";

/** Options for {@link openWorkers}. */
export interface OpenWorkersInit {
  disk: Disk;
  runtimeId: string;
  settings: LogSettings;
  stats: FileStoreStats;
  /** Workers opened in parallel. */
  concurrency: number;
}

/** The workers found at open. */
export interface OpenedWorkers {
  /** What the runtime is handed, in creation order. */
  restored: RestoredWorker[];
  /** Their files, for the store to serve them. */
  files: WorkerFiles[];
  diagnostics: StoreDiagnostic[];
}

/**
 * Opens every worker directory of the data dir, a few at a time, after
 * removing what an interrupted creation or deletion left behind.
 */
export async function openWorkers(init: OpenWorkersInit): Promise<OpenedWorkers> {
  const { disk } = init;
  const ids: string[] = [];
  const diagnostics: StoreDiagnostic[] = [];
  for (const name of await readdir(disk.abs(WORKERS_DIR))) {
    if (name.startsWith(STAGING_PREFIX) || name.startsWith(DELETING_PREFIX)) {
      // Cleanup only: no worker lives there, so start-up goes on if it fails (retried at the next open).
      await rm(disk.abs(path.join(WORKERS_DIR, name)), { recursive: true, force: true }).catch((error: unknown) => {
        diagnostics.push({
          severity: DiagnosticSeverity.WARNING,
          code: "store.cleanup_failed",
          message: `${path.join(WORKERS_DIR, name)}, left by an interrupted worker creation or deletion, could not be removed (${errorCode(error)}); it is retried at the next start`,
        });
      });
      continue;
    }
    const id = workerIdFromDirName(name);
    if (id !== undefined && workerDirName(id) === name) ids.push(id);
  }
  const opened: Array<{ files: WorkerFiles; worker: RestoredWorker }> = [];
  let next = 0;
  const openNext = async (): Promise<void> => {
    while (next < ids.length) {
      const id = ids[next++];
      if (id === undefined) break;
      diagnostics.push(...(await sweepTempFiles(disk, workerDir(id))));
      const result = await restoreWorker(id, init.runtimeId, disk, init.settings, init.stats);
      diagnostics.push(...result.diagnostics);
      opened.push({ files: result.files, worker: result.restored });
    }
  };
  const lanes = Math.max(1, init.concurrency);
  await Promise.all(Array.from({ length: lanes }, openNext));
  opened.sort(
    (a, b) =>
      a.files.creationIndex - b.files.creationIndex || compare(a.worker.record.worker.ref?.workerId, b.worker.record.worker.ref?.workerId),
  );
  return { restored: opened.map((o) => o.worker), files: opened.map((o) => o.files), diagnostics };
}

function compare(a: string | undefined, b: string | undefined): number {
  return (a ?? "").localeCompare(b ?? "");
}
