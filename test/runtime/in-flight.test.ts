import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { WorkerEventSchema, type WorkerEvent } from "../../gen/worker_runtime/v1/events_pb.js";
import { RunSchema, RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { InFlightAccumulator } from "../../src/runtime/in-flight.js";

const event = (kind: WorkerEvent["kind"]): WorkerEvent => create(WorkerEventSchema, { kind });

describe("the in-flight accumulator", () => {
  it("builds blocks from deltas and drops them on commit, discard and run end", () => {
    const acc = new InFlightAccumulator();
    acc.apply(event({ case: "textDelta", value: { $typeName: "worker_runtime.v1.TextDelta", runId: "r1", blockId: "b1", text: "Hel" } }));
    acc.apply(event({ case: "textDelta", value: { $typeName: "worker_runtime.v1.TextDelta", runId: "r1", blockId: "b1", text: "lo" } }));
    acc.apply(
      event({
        case: "toolCallDelta",
        value: {
          $typeName: "worker_runtime.v1.ToolCallDelta",
          runId: "r1",
          blockId: "b2",
          toolCallId: "c1",
          toolName: "read_file",
          argumentsDelta: '{"pa',
        },
      }),
    );
    acc.apply(
      event({ case: "reasoningDelta", value: { $typeName: "worker_runtime.v1.ReasoningDelta", runId: "r1", blockId: "b3", text: "hmm" } }),
    );
    expect(acc.snapshot().map((b) => [b.blockId, b.text, b.toolName])).toEqual([
      ["b1", "Hello", ""],
      ["b2", '{"pa', "read_file"],
      ["b3", "hmm", ""],
    ]);

    acc.apply(
      event({ case: "blockDiscarded", value: { $typeName: "worker_runtime.v1.InFlightBlockDiscarded", runId: "r1", blockId: "b2" } }),
    );
    expect(acc.snapshot().map((b) => b.blockId)).toEqual(["b1", "b3"]);

    acc.apply(
      event({
        case: "transcriptAppended",
        value: { $typeName: "worker_runtime.v1.TranscriptEntry", seq: 1n, runId: "r1", blockId: "b1", content: { case: undefined } },
      }),
    );
    expect(acc.snapshot().map((b) => b.blockId)).toEqual(["b3"]);

    acc.apply(event({ case: "runChanged", value: create(RunSchema, { runId: "r1", status: RunStatus.CANCELLED }) }));
    expect(acc.snapshot()).toEqual([]);
  });
});
