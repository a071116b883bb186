import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { WorkerRefSchema } from "../../gen/worker_runtime/v1/common_pb.js";
import { RuntimeEventSchema, type RuntimeEvent } from "../../gen/worker_runtime/v1/events_pb.js";
import { WorkerSchema, type Worker } from "../../gen/worker_runtime/v1/worker_pb.js";
import type { BackgroundWrites } from "./background-write.js";
import type { CursorStream } from "./cursor.js";
import { encodeRuntimeEvent } from "./event-encoding.js";
import { DurableEventStream } from "./event-stream.js";
import { type Limits, subscriberBacklog } from "./limits.js";
import type { Logger } from "./logger.js";
import { cloneMessage } from "./message-clone.js";
import { type RuntimeMetrics, timedAppend } from "./metrics.js";
import type { RuntimeHealth } from "./runtime-health.js";
import { eventsNotPersisted } from "./store-errors.js";
import type { RuntimeStore } from "./store.js";

/** What {@link RuntimeEventFeed} needs from its runtime. */
export interface RuntimeEventFeedInit {
  runtimeId: string;
  stream: CursorStream;
  /** Seq of the last durable runtime event at start-up. */
  lastSeq: bigint;
  store: RuntimeStore;
  limits: Limits;
  metrics: RuntimeMetrics;
  health: RuntimeHealth;
  background: BackgroundWrites;
  logger: Logger;
  /** A hosted worker as it is now, or undefined once it is deleted. */
  workerOf(workerId: string): Worker | undefined;
}

/**
 * The runtime-wide event stream (WatchRuntime) and what it owes after a
 * write the store failed to take (disk full, read-only). The event is
 * rolled back, so it reaches nobody: every open watch is ended with
 * UNAVAILABLE + STORE_UNAVAILABLE (after the events it holds), as a
 * worker's watches are (worker-journal.ts), and never sent a copy that is
 * not durable. What is owed is, per worker whose event was lost, its latest
 * state: a worker's state (status, active run, queue, usage) is carried
 * whole by one workerUpdated, so that is what makes a resumed watch agree
 * with GetWorker and ListWorkers again (its workerCreated if watchers never
 * had that, workerRemoved if it is gone by then). A lost run change is not
 * replayed: the worker's state says whether the run is still active, GetRun
 * says how it ended, and a run whose acceptance failed (its QUEUED was
 * published) never existed. The owed states are published again, oldest
 * loss first, when runtime health leaves DEGRADED, when a watch opens (so a
 * watch opened while the store still fails ends too) and before the next
 * event, so they keep their place ahead of it.
 */
export class RuntimeEventFeed {
  readonly events: DurableEventStream<RuntimeEvent>;
  /** Workers whose latest event was lost: the publish that lost it, and whether it announced the worker. */
  private readonly owed = new Map<string, { n: number; created: boolean }>();
  private published = 0;
  private catchingUp = false;

  constructor(private readonly init: RuntimeEventFeedInit) {
    const { store, health } = init;
    this.events = new DurableEventStream<RuntimeEvent>({
      stream: init.stream,
      lastSeq: init.lastSeq,
      encode: encodeRuntimeEvent,
      persistEvents: timedAppend(init.metrics, "runtime_events", store.appendRuntimeEvents.bind(store)),
      onPersistResult: (error) => health.storeResult("runtime-events", error),
      catchUp: () => this.catchUp(),
      subscriberBacklog: subscriberBacklog(init.limits),
    });
    health.onStatusChange(() => {
      if (!health.storeDegraded && !health.closed) this.catchUp();
    });
  }

  /** Publishes a runtime event in the background (its loss is owed, see above). */
  publish(kind: RuntimeEvent["kind"]): void {
    this.catchUp();
    const n = ++this.published;
    const workerId = workerIdOf(kind);
    const time = timestampFromDate(new Date());
    const write = this.events
      .emitDurable((seq, cursor) => create(RuntimeEventSchema, { seq, cursor, time, kind }))
      .then(
        () => {
          // A later state of the worker written supersedes what an earlier loss owed; a run's change carries no worker
          // state, so a workerUpdated lost before it (in an earlier batch that failed) is still owed.
          if (kind.case !== "runChanged" && (this.owed.get(workerId)?.n ?? Infinity) < n) this.owed.delete(workerId);
        },
        (error: unknown) => {
          const owed = this.owed.get(workerId);
          const created = (owed?.created ?? false) || kind.case === "workerCreated";
          if ((owed?.n ?? 0) < n) this.owed.set(workerId, { n, created });
          this.events.closeAll(eventsNotPersisted({ runtime_id: this.init.runtimeId }, error));
          throw error;
        },
      );
    this.init.background.start(write, { logger: this.init.logger, message: "could not persist a runtime event" });
  }

  /** Publishes each owed worker's latest state again, oldest loss first (see above). */
  catchUp(): void {
    if (this.catchingUp || this.owed.size === 0 || this.init.health.closed) return;
    this.catchingUp = true;
    try {
      const owed = [...this.owed].sort(([, a], [, b]) => a.n - b.n);
      for (const [workerId, { created }] of owed) {
        // No longer owed while it is written again (a catch-up meanwhile must not publish it twice); a failure owes it again.
        this.owed.delete(workerId);
        const worker = this.init.workerOf(workerId);
        if (worker) this.publish({ case: created ? "workerCreated" : "workerUpdated", value: cloneMessage(WorkerSchema, worker) });
        else this.publish({ case: "workerRemoved", value: create(WorkerRefSchema, { runtimeId: this.init.runtimeId, workerId }) });
      }
    } finally {
      this.catchingUp = false;
    }
  }
}

function workerIdOf(kind: RuntimeEvent["kind"]): string {
  switch (kind.case) {
    case "workerCreated":
    case "workerUpdated":
      return kind.value.ref?.workerId ?? "";
    case "workerRemoved":
      return kind.value.workerId;
    case "runChanged":
      return kind.value.worker?.workerId ?? "";
    case undefined:
      return "";
  }
}
