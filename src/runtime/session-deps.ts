import type { Profile } from "../../gen/worker_runtime/v1/profile_pb.js";
import type { Run } from "../../gen/worker_runtime/v1/run_pb.js";
import type { Worker } from "../../gen/worker_runtime/v1/worker_pb.js";
import type { BackgroundWrites } from "./background-write.js";
import type { CursorStream } from "./cursor.js";
import type { ExecutionBackend, RunPolicy } from "./execution-backend.js";
import type { Limits } from "./limits.js";
import type { Logger } from "./logger.js";
import type { WorkspaceDirs } from "./mounts.js";
import type { RuntimeMetrics } from "./metrics.js";
import type { RuntimeStore } from "./store.js";

/** What a worker session needs from its Runtime. */
export interface SessionDeps {
  store: RuntimeStore;
  backend: ExecutionBackend | undefined;
  limits: Limits;
  logger: Logger;
  metrics: RuntimeMetrics;
  now(): Date;
  newRunId(): string;
  profileOf(worker: Worker): Profile;
  /** Throws BUNDLE_UNAVAILABLE when a worker's config bundle is not served, so it takes no input it could not run. */
  checkProfile(worker: Worker): void;
  /** Host directories of a worker's workspace, of its root, of every root and of its mounts (never sent to clients). */
  workspaceDirOf(worker: Worker): WorkspaceDirs | undefined;
  /** Secrets and shell policy of a worker's runs; throws SECRET_NOT_FOUND when the host lacks one. */
  policyOf(worker: Worker): RunPolicy;
  /** Reports every store write outcome per write path (runtime health). */
  onStoreResult(source: string, error: unknown): void;
  /** Publishes a worker change on the runtime-wide stream. */
  publishWorker(worker: Worker): void;
  /** Publishes a run change on the runtime-wide stream. */
  publishRun(run: Run): void;
  /** The writes nobody waits for, kept so that close waits for them before the store closes. */
  background: BackgroundWrites;
  /** Refuses new input while the runtime drains. */
  checkAcceptingWork(): void;
  /** The stream a worker's cursors name (bound to runtime, store and worker; see cursor.ts). */
  cursorStreamOf(workerId: string): CursorStream;
}
