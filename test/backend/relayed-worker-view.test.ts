import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import {
  InFlightBlockKind,
  WorkerEventSchema,
  WorkerSnapshotSchema,
  type WorkerEvent,
  type WorkerSnapshot,
} from "../../gen/worker_runtime/v1/events_pb.js";
import { RunSchema, RunStatus, type Run } from "../../gen/worker_runtime/v1/run_pb.js";
import { WorkerStatus } from "../../gen/worker_runtime/v1/worker_pb.js";
import { RelayedWorkerView } from "../../src/backend/relayed-worker-view.js";
import { changeOf } from "../../src/backend/shown-change.js";
import { InFlightAccumulator } from "../../src/runtime/in-flight.js";

/**
 * The Backend's record of what a relayed WatchWorker client was shown, and
 * the live events that catch it up with a resumed upstream's snapshot. A
 * client is modelled as the runtime's own in-flight rules
 * (InFlightAccumulator) plus its worker and open runs: after the catch-up
 * it must show exactly what the snapshot shows, whatever it missed.
 */
type EventInit = MessageInitShape<typeof WorkerEventSchema>;

const running = create(RunSchema, { runId: "r1", status: RunStatus.RUNNING });
const worker = { ref: { runtimeId: "rs", workerId: "w" }, status: WorkerStatus.RUNNING, activeRunId: "r1" };

/** A client: what it renders from the events it got. */
class Client {
  readonly inFlight = new InFlightAccumulator();
  readonly runs = new Map<string, Run>();
  worker = create(WorkerSnapshotSchema, { worker }).worker;

  apply(event: WorkerEvent): void {
    this.inFlight.apply(event);
    if (event.kind.case === "workerChanged") this.worker = event.kind.value;
    if (event.kind.case === "runChanged") {
      if (event.kind.value.status >= RunStatus.COMPLETED) this.runs.delete(event.kind.value.runId);
      else this.runs.set(event.kind.value.runId, event.kind.value);
    }
  }
}

/** A client and the relay's view of it, both shown `first` (the stream's snapshot) and then `events`. */
function shown(first: WorkerSnapshot, events: EventInit[]): { client: Client; view: RelayedWorkerView } {
  const client = new Client();
  const view = new RelayedWorkerView();
  view.reset(first);
  for (const run of first.activeRun ? [first.activeRun] : []) client.runs.set(run.runId, run);
  for (const init of events) {
    const event = create(WorkerEventSchema, init);
    client.apply(event);
    view.apply(changeOf(event));
  }
  return { client, view };
}

const text = (blockId: string, value: string): EventInit => ({ kind: { case: "textDelta", value: { runId: "r1", blockId, text: value } } });

async function caughtUp(client: Client, view: RelayedWorkerView, snapshot: WorkerSnapshot, ended?: Run): Promise<WorkerEvent[]> {
  const events = await view.catchUp(snapshot, async () => ended);
  for (const event of events) {
    expect(event.seq).toBe(0n);
    expect(event.cursor).toBe("");
    client.apply(event);
  }
  expect(client.inFlight.snapshot()).toEqual(snapshot.inFlight);
  expect(client.worker).toEqual(snapshot.worker);
  expect([...client.runs.values()]).toEqual(snapshot.activeRun ? [snapshot.activeRun] : []);
  return events;
}

describe("catching a relayed client up with a resumed upstream's snapshot", () => {
  const first = create(WorkerSnapshotSchema, { worker, activeRun: running });

  it("sends nothing when the client shows the snapshot already", async () => {
    const { client, view } = shown(first, [text("b1", "hello")]);
    const snapshot = create(WorkerSnapshotSchema, {
      worker,
      activeRun: running,
      inFlight: [{ runId: "r1", blockId: "b1", kind: InFlightBlockKind.TEXT, text: "hello" }],
    });
    expect(await caughtUp(client, view, snapshot)).toEqual([]);
  });

  it("sends the missed tail of a block (whatever it says), a block never seen, and drops one discarded unseen", async () => {
    const { client, view } = shown(first, [text("b1", "héllo "), text("b0", "gone")]);
    const snapshot = create(WorkerSnapshotSchema, {
      worker,
      activeRun: running,
      inFlight: [
        { runId: "r1", blockId: "b1", kind: InFlightBlockKind.TEXT, text: "héllo restart" },
        { runId: "r1", blockId: "b2", kind: InFlightBlockKind.TOOL_CALL, text: '{"a"', toolCallId: "c1", toolName: "read_file" },
      ],
    });
    const events = await caughtUp(client, view, snapshot);
    expect(events.map((e) => e.kind.case)).toEqual(["blockDiscarded", "textDelta", "toolCallDelta"]);
    // Caught up: the same snapshot again sends nothing more.
    expect(await view.catchUp(snapshot, async () => undefined)).toEqual([]);
  });

  it("restarts a block whose text the client has is not a start of the snapshot's", async () => {
    const { client, view } = shown(first, [text("b1", "a much longer text")]);
    const snapshot = create(WorkerSnapshotSchema, {
      worker,
      activeRun: running,
      inFlight: [{ runId: "r1", blockId: "b1", kind: InFlightBlockKind.TEXT, text: "short" }],
    });
    expect((await caughtUp(client, view, snapshot)).map((e) => e.kind.case)).toEqual(["blockDiscarded", "textDelta"]);
  });

  it("ends a run that ended unseen (read with GetRun), then changes the worker", async () => {
    const { client, view } = shown(first, [text("b1", "partial")]);
    const failed = { ...worker, status: WorkerStatus.FAILED, activeRunId: "", failureMessage: "damaged" };
    const snapshot = create(WorkerSnapshotSchema, { worker: failed });
    const ended = create(RunSchema, { runId: "r1", status: RunStatus.FAILED });
    const events = await caughtUp(client, view, snapshot, ended);
    expect(events.map((e) => e.kind.case)).toEqual(["runChanged", "workerChanged"]);
    expect(events[0]?.kind.value).toEqual(ended);
  });
});
