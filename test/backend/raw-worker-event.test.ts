import { create, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { describe, expect, it } from "vitest";
import { WorkerEventSchema } from "../../gen/worker_runtime/v1/events_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { WorkerStatus } from "../../gen/worker_runtime/v1/worker_pb.js";
import { rawWorkerChange, RecentIds } from "../../src/backend/raw-worker-event.js";
import { changeOf } from "../../src/backend/shown-change.js";

/**
 * The Backend's undecoded relay reads what a client's view needs from each
 * event's wire bytes (raw-worker-event.ts), its JSON relay from the decoded
 * event (shown-change.ts). Both must read the same change from every
 * kind of event, or a resumed client of one would be caught up wrongly.
 */
const time = { seconds: 1_700_000_000n };
const events: Record<string, MessageInitShape<typeof WorkerEventSchema>> = {
  "a worker change": {
    seq: 7n,
    cursor: "c7",
    time,
    kind: {
      case: "workerChanged",
      value: { ref: { runtimeId: "r", workerId: "w" }, status: WorkerStatus.FAILED, failureMessage: "damaged" },
    },
  },
  "a run change": {
    seq: 8n,
    cursor: "c8",
    time,
    kind: { case: "runChanged", value: { runId: "run-1", status: RunStatus.RUNNING, turns: 2 } },
  },
  "a committed entry of a block": {
    seq: 9n,
    cursor: "c9",
    kind: { case: "transcriptAppended", value: { seq: 3n, runId: "run-1", blockId: "b1", createdAt: time } },
  },
  "a committed entry of no block": { seq: 10n, cursor: "c10", kind: { case: "transcriptAppended", value: { seq: 4n, runId: "run-1" } } },
  "a text delta (not ASCII)": { kind: { case: "textDelta", value: { runId: "run-1", blockId: "b2", text: "héllo 🌍" } } },
  "a reasoning delta": { kind: { case: "reasoningDelta", value: { runId: "run-1", blockId: "b3", text: "hmm" } } },
  "a tool call's first delta": {
    kind: {
      case: "toolCallDelta",
      value: { runId: "run-1", blockId: "b4", toolCallId: "call-1", toolName: "read_file", argumentsDelta: "" },
    },
  },
  "a tool call's arguments": { kind: { case: "toolCallDelta", value: { runId: "run-1", blockId: "b4", argumentsDelta: '{"pa' } } },
  "a delta whose ids start with U+FEFF": {
    kind: { case: "textDelta", value: { runId: "\uFEFFrun", blockId: "\uFEFFb5", text: "\uFEFFx" } },
  },
  "a discarded block": { kind: { case: "blockDiscarded", value: { runId: "run-1", blockId: "b2" } } },
  "a retry": { kind: { case: "retryScheduled", value: { runId: "run-1", retry: { attempt: 1 } } } },
  "an empty event": {},
};

/** The event as a relayed response carries it: a length-delimited entry of its events field. */
function entry(init: MessageInitShape<typeof WorkerEventSchema>): Uint8Array {
  return new BinaryWriter().bytes(toBinary(WorkerEventSchema, create(WorkerEventSchema, init))).finish();
}

describe("the change a relayed event makes to a client's view", () => {
  it.each(Object.entries(events))("is the same read from the wire bytes as from the decoded event: %s", (_, init) => {
    const event = create(WorkerEventSchema, init);
    expect(rawWorkerChange(entry(init), new RecentIds())).toEqual(changeOf(event));
    // And with the text, for a view that holds it: the same UTF-8 bytes either way.
    expect(rawWorkerChange(entry(init), new RecentIds(), true)).toEqual(changeOf(event, true));
  });

  it("counts a delta's text in UTF-8 bytes", () => {
    expect(rawWorkerChange(entry(events["a text delta (not ASCII)"] ?? {}), new RecentIds())).toMatchObject({
      bytes: Buffer.byteLength("héllo 🌍"),
    });
  });
});
