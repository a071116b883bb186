import { create } from "@bufbuild/protobuf";
import { cloneMessage } from "./message-clone.js";
import { WorkerSnapshotSchema, type WorkerEvent, type WorkerSnapshot } from "../../gen/worker_runtime/v1/events_pb.js";
import { RunSchema, RunStatus, type Run } from "../../gen/worker_runtime/v1/run_pb.js";
import { WorkerSchema, type Worker } from "../../gen/worker_runtime/v1/worker_pb.js";
import { encodeCursor, type CursorStream } from "./cursor.js";
import { InFlightAccumulator, TERMINAL_RUN_STATUSES } from "./in-flight.js";

/**
 * A worker as its observers have seen it: rebuilt from delivered events
 * only (worker changes, run changes, in-flight deltas). Snapshots are cut
 * from here, never from live state that may be ahead of the stream, so a
 * watcher never sees the stream after its snapshot go backwards.
 */
export class ObservedState {
  private readonly inFlight = new InFlightAccumulator();
  /** Runs not yet ended, in the order they were accepted. */
  private readonly openRuns = new Map<string, Run>();
  private worker: Worker;
  private seq: bigint;

  constructor(
    worker: Worker,
    seq: bigint,
    private readonly cursors: CursorStream,
  ) {
    this.worker = cloneMessage(WorkerSchema, worker);
    this.seq = seq;
  }

  /** Applies one delivered event. */
  apply(event: WorkerEvent): void {
    if (event.seq > 0n) this.seq = event.seq;
    this.inFlight.apply(event);
    const kind = event.kind;
    if (kind.case === "workerChanged") {
      this.worker = kind.value;
    } else if (kind.case === "runChanged") {
      if (TERMINAL_RUN_STATUSES.has(kind.value.status)) this.openRuns.delete(kind.value.runId);
      else this.openRuns.set(kind.value.runId, kind.value);
    }
  }

  /** Seq of the last delivered durable event. */
  get lastSeq(): bigint {
    return this.seq;
  }

  /** The snapshot as of the last delivered event. */
  snapshot(): WorkerSnapshot {
    const runs = [...this.openRuns.values()];
    const active = runs.find((run) => run.status !== RunStatus.QUEUED);
    return create(WorkerSnapshotSchema, {
      worker: cloneMessage(WorkerSchema, this.worker),
      queuedRuns: runs.filter((run) => run.status === RunStatus.QUEUED).map((run) => cloneMessage(RunSchema, run)),
      inFlight: this.inFlight.snapshot(),
      cursor: encodeCursor(this.cursors, this.seq),
      ...(active ? { activeRun: cloneMessage(RunSchema, active) } : {}),
    });
  }
}
