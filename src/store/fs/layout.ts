import * as path from "node:path";

/**
 * Names inside the data dir. Everything is keyed by the runtime (one data
 * dir = one runtime, whose id is in `runtime.snapshot`) and by worker id;
 * no host path, pid or socket ever names anything.
 *
 *   FORMAT                                      the data dir's format (data-dir-format.ts)
 *   runtime.snapshot
 *   events/<first seq>.log|.idx                 runtime-wide events
 *   workers/<worker dir>/worker.snapshot
 *   workers/<worker dir>/worker.created         the worker as created, never rewritten (worker-restore.ts)
 *   workers/<worker dir>/{transcript,events,runs}/<first seq>.log|.idx
 *   workers/<worker dir>/runs/run-index.checkpoint   the run index (run-index-checkpoint.ts)
 *   bundles/<bundle id>.bundle                  config bundles (config-bundle-files.ts)
 */
export const FORMAT_FILE = "FORMAT";
export const RUNTIME_SNAPSHOT = "runtime.snapshot";
export const RUNTIME_EVENTS_DIR = "events";
export const WORKERS_DIR = "workers";
export const WORKER_SNAPSHOT = "worker.snapshot";
/**
 * The worker's snapshot as of its creation, written once and never replaced:
 * what its users chose (display name, labels, intent, profile...) and its
 * creation time and order survive a snapshot that can no longer be read.
 */
export const WORKER_CREATED = "worker.created";
export const WORKER_LOG_DIRS = ["transcript", "events", "runs"] as const;

/** Prefix of a worker dir being created (renamed into place once complete). */
export const STAGING_PREFIX = ".new-";
/** Prefix of a worker dir being deleted (renamed away first, then removed). */
export const DELETING_PREFIX = ".del-";

/**
 * Worker ids become directory names. Plain ids are used as they are; any
 * other id is hex-encoded behind a `~`, so that no id can climb out of the
 * workers dir or collide with another.
 */
export function workerDirName(workerId: string): string {
  if (/^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/.test(workerId)) return workerId;
  return `~${Buffer.from(workerId, "utf8").toString("hex")}`;
}

/** Inverse of {@link workerDirName}; undefined for names that are not worker dirs. */
export function workerIdFromDirName(name: string): string | undefined {
  if (name.startsWith("~")) {
    const hex = name.slice(1);
    return /^([0-9a-f]{2})+$/.test(hex) ? Buffer.from(hex, "hex").toString("utf8") : undefined;
  }
  return /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/.test(name) ? name : undefined;
}

/** Relative path of a worker's directory. */
export function workerDir(workerId: string): string {
  return path.join(WORKERS_DIR, workerDirName(workerId));
}
