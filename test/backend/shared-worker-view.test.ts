import { create, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { describe, expect, it } from "vitest";
import { WorkerEventSchema } from "../../gen/worker_runtime/v1/events_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { WorkerSchema, WorkerStatus } from "../../gen/worker_runtime/v1/worker_pb.js";
import { rawWorkerChange, RecentIds } from "../../src/backend/raw-worker-event.js";
import { SharedWorkerView } from "../../src/backend/shared-worker-view.js";
import { encodeCursor, workerCursorStream } from "../../src/runtime/cursor.js";
import { ObservedState } from "../../src/runtime/observed-state.js";

/**
 * The Backend's shared WatchWorker cuts each joining client's snapshot from
 * its SharedWorkerView, built from the undecoded events it relays; the
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

describe("SharedWorkerView", () => {
  it("cuts the snapshot the runtime's observed state cuts, after every event of a stream", () => {
    const observed = new ObservedState(create(WorkerSchema, { ref, status: WorkerStatus.IDLE }), 1n, cursors);
    const view = new SharedWorkerView(1 << 20);
    view.reset(observed.snapshot());
    const ids = new RecentIds();
    stream.forEach((init, i) => {
      const event = create(WorkerEventSchema, init);
      observed.apply(event);
      view.apply(rawWorkerChange(entry(init), ids, true));
      if (event.cursor) view.cursor = event.cursor;
      expect(view.snapshot(), `after event ${i}`).toEqual(observed.snapshot());
      // A view reset from that snapshot holds the same.
      const copy = new SharedWorkerView(1 << 20);
      copy.reset(observed.snapshot());
      expect(copy.snapshot(), `reset after event ${i}`).toEqual(observed.snapshot());
    });
    expect(view.servable).toBe(true);
    expect(view.inFlightBytes).toBe(Buffer.byteLength("next"));
  });

  it("holds no more in-flight text than its bound: past it the block's text is dropped and no snapshot is cut until the block ends", () => {
    const view = new SharedWorkerView(16);
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
