import { create, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { describe, expect, it } from "vitest";
import { WorkerEventSchema, type WorkerEvent, type WorkerSnapshot } from "../../gen/worker_runtime/v1/events_pb.js";
import { RunStatus, type Run } from "../../gen/worker_runtime/v1/run_pb.js";
import { WorkerSchema, WorkerStatus } from "../../gen/worker_runtime/v1/worker_pb.js";
import { rawWorkerChange, RecentIds } from "../../src/backend/raw-worker-event.js";
import { RelayedWorkerView } from "../../src/backend/relayed-worker-view.js";
import { encodeCursor, workerCursorStream } from "../../src/runtime/cursor.js";
import { ObservedState } from "../../src/runtime/observed-state.js";

/**
 * The Backend's shared WatchWorker cuts each joining client's snapshot from
 * its RelayedWorkerView (holding text), built from the undecoded events it
 * relays, the same record its upstream's catch-ups come from; the
 * Runtime cuts a direct watcher's from its ObservedState, built from the
 * decoded events it delivers. Fed the same events, both must cut the same
 * snapshot after every one: worker, active and queued runs, in-flight
 * blocks with their text (not ASCII, a tool call's name and arguments, a
 * block discarded and one committed, a run's end dropping its blocks),
 * cursor.
 */
const cursors = workerCursorStream("rs", "store-1", "w1");
const ref = { runtimeId: "rs", workerId: "w1" };
let seq = 1n;
const durable = (kind: MessageInitShape<typeof WorkerEventSchema>["kind"]): MessageInitShape<typeof WorkerEventSchema> => {
  seq++;
  return { seq, cursor: encodeCursor(cursors, seq), kind };
};
const live = (kind: MessageInitShape<typeof WorkerEventSchema>["kind"]): MessageInitShape<typeof WorkerEventSchema> => ({ kind });
const run = (runId: string, status: RunStatus) => ({ runId, worker: ref, status, input: { text: `input of ${runId}` } });

const stream: MessageInitShape<typeof WorkerEventSchema>[] = [
  durable({ case: "runChanged", value: run("run-1", RunStatus.QUEUED) }),
  durable({ case: "runChanged", value: run("run-2", RunStatus.QUEUED) }),
  durable({ case: "runChanged", value: run("run-1", RunStatus.RUNNING) }),
  durable({ case: "workerChanged", value: { ref, status: WorkerStatus.RUNNING, activeRunId: "run-1", queuedRuns: 1 } }),
  live({ case: "reasoningDelta", value: { runId: "run-1", blockId: "b1", text: "thinking " } }),
  live({ case: "reasoningDelta", value: { runId: "run-1", blockId: "b1", text: "hard" } }),
  live({ case: "textDelta", value: { runId: "run-1", blockId: "b2", text: "héllo " } }),
  live({ case: "textDelta", value: { runId: "run-1", blockId: "b2", text: "🌍 and \uFEFF more" } }),
  durable({ case: "transcriptAppended", value: { seq: 1n, runId: "run-1", blockId: "b1" } }),
  live({
    case: "toolCallDelta",
    value: { runId: "run-1", blockId: "b3", toolCallId: "call-1", toolName: "read_file", argumentsDelta: "" },
  }),
  live({ case: "toolCallDelta", value: { runId: "run-1", blockId: "b3", argumentsDelta: '{"path":' } }),
  live({ case: "textDelta", value: { runId: "run-1", blockId: "b4", text: "dropped" } }),
  live({ case: "blockDiscarded", value: { runId: "run-1", blockId: "b4" } }),
  live({ case: "toolCallDelta", value: { runId: "run-1", blockId: "b3", argumentsDelta: '"notes.txt"}' } }),
  durable({ case: "runChanged", value: run("run-1", RunStatus.COMPLETED) }),
  durable({ case: "runChanged", value: run("run-2", RunStatus.RUNNING) }),
  live({ case: "textDelta", value: { runId: "run-2", blockId: "b5", text: "next" } }),
];

/** The event as a relayed response carries it: a length-delimited entry of its events field. */
function entry(init: MessageInitShape<typeof WorkerEventSchema>): Uint8Array {
  return new BinaryWriter().bytes(toBinary(WorkerEventSchema, create(WorkerEventSchema, init))).finish();
}

describe("the shared WatchWorker's view (a RelayedWorkerView holding text)", () => {
  it("cuts the snapshot the runtime's observed state cuts, after every event of a stream", () => {
    const observed = new ObservedState(create(WorkerSchema, { ref, status: WorkerStatus.IDLE }), 1n, cursors);
    const view = new RelayedWorkerView(1 << 20);
    view.reset(observed.snapshot());
    const ids = new RecentIds();
    stream.forEach((init, i) => {
      const event = create(WorkerEventSchema, init);
      observed.apply(event);
      view.apply(rawWorkerChange(entry(init), ids, true));
      if (event.cursor) view.cursor = event.cursor;
      expect(view.snapshot(), `after event ${i}`).toEqual(observed.snapshot());
      // A view reset from that snapshot holds the same.
      const copy = new RelayedWorkerView(1 << 20);
      copy.reset(observed.snapshot());
      expect(copy.snapshot(), `reset after event ${i}`).toEqual(observed.snapshot());
    });
    expect(view.servable).toBe(true);
    expect(view.inFlightBytes).toBe(Buffer.byteLength("next"));
  });

  it("caught up from any point of the stream to the snapshot of any later point, cuts that snapshot", async () => {
    const initial = new ObservedState(create(WorkerSchema, { ref, status: WorkerStatus.IDLE }), 1n, cursors).snapshot();
    const snapshots: WorkerSnapshot[] = [];
    const lastRuns = new Map<string, Run>();
    const observed = new ObservedState(create(WorkerSchema, { ref, status: WorkerStatus.IDLE }), 1n, cursors);
    for (const init of stream) {
      const event = create(WorkerEventSchema, init);
      observed.apply(event);
      if (event.kind.case === "runChanged") lastRuns.set(event.kind.value.runId, event.kind.value);
      snapshots.push(observed.snapshot());
    }
    for (let seen = 0; seen <= stream.length; seen++) {
      for (let target = Math.max(seen - 1, 0); target < stream.length; target++) {
        const view = new RelayedWorkerView(1 << 20);
        view.reset(initial);
        const ids = new RecentIds();
        for (const init of stream.slice(0, seen)) view.apply(rawWorkerChange(entry(init), ids, true));
        const snapshot = snapshots[target] as WorkerSnapshot;
        let told: WorkerEvent[] | undefined;
        const events = await view.catchUp(
          snapshot,
          async (runId) => lastRuns.get(runId),
          (caughtUp) => (told = caughtUp),
        );
        expect(told, `told the catch-up from ${seen} to ${target}`).toBe(events);
        view.cursor = snapshot.cursor;
        expect(view.snapshot(), `caught up from ${seen} events to the snapshot after event ${target}`).toEqual(snapshot);
      }
    }
  });

  it("holds no more in-flight text than its bound: past it the block's text is dropped and no snapshot is cut until the block ends", () => {
    const view = new RelayedWorkerView(16);
    view.reset(new ObservedState(create(WorkerSchema, { ref }), 1n, cursors).snapshot());
    const ids = new RecentIds();
    const delta = (blockId: string, text: string) =>
      view.apply(rawWorkerChange(entry(live({ case: "textDelta", value: { runId: "run-1", blockId, text } })), ids, true));
    delta("b1", "0123456789");
    delta("b2", "01234");
    expect([view.servable, view.inFlightBytes]).toEqual([true, 15]);
    delta("b2", "56");
    expect([view.servable, view.inFlightBytes]).toEqual([false, 10]);
    delta("b2", "7");
    expect([view.servable, view.inFlightBytes]).toEqual([false, 10]);
    view.apply(rawWorkerChange(entry(live({ case: "blockDiscarded", value: { runId: "run-1", blockId: "b2" } })), ids, true));
    expect([view.servable, view.inFlightBytes]).toEqual([true, 10]);
    expect(view.snapshot().inFlight.map((block) => block.text)).toEqual(["0123456789"]);
  });
});
