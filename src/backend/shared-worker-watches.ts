import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import type { WatchWorkerResponse } from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import { detached } from "../telemetry/tracing/index.js";
import type { RuntimeConnection } from "./runtime-connection.js";
import type { RuntimeDirectory } from "./runtime-directory.js";
import { SharedWorkerWatch, type SharedWorkerWatchOptions } from "./shared-worker-watch.js";

/**
 * The Backend's shared upstream WatchWorker streams, one per (Runtime
 * connection, watched worker): opened by the first client of a worker,
 * closed a linger after its last (shared-worker-watch.ts). A Runtime
 * registered again is a new connection, with watches of its own.
 */
export class SharedWorkerWatches {
  private readonly byConnection = new WeakMap<RuntimeConnection, Map<string, SharedWorkerWatch>>();

  constructor(
    private readonly directory: RuntimeDirectory,
    private readonly options: SharedWorkerWatchOptions,
  ) {}

  /**
   * Serves a client of `worker` from its shared watch (opened now if it has
   * none), or undefined when the shared watch cannot serve it: the caller
   * relays that client on its own upstream stream.
   */
  serve(
    connection: RuntimeConnection,
    worker: WorkerRef,
    afterCursor: string,
    signal: AbortSignal,
  ): Promise<AsyncGenerator<WatchWorkerResponse> | undefined> {
    let watches = this.byConnection.get(connection);
    if (!watches) {
      watches = new Map();
      this.byConnection.set(connection, watches);
    }
    let watch = watches.get(worker.workerId);
    if (!watch || watch.closed) {
      const opened: SharedWorkerWatch = new SharedWorkerWatch(this.directory, connection, worker, this.options, () => {
        if (watches.get(worker.workerId) === opened) watches.delete(worker.workerId);
      });
      watch = opened;
      watches.set(worker.workerId, opened);
      // It outlives the call that opened it: not part of that call's trace.
      detached(() => opened.start());
    }
    return watch.serve(afterCursor, signal);
  }

  /** The shared watch of a worker, while it is open (for diagnostics and tests). */
  get(connection: RuntimeConnection, workerId: string): SharedWorkerWatch | undefined {
    return this.byConnection.get(connection)?.get(workerId);
  }
}
