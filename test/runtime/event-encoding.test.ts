import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { WorkerEventSchema, type WorkerEvent } from "../../gen/worker_runtime/v1/events_pb.js";
import { encodeWorkerEvent } from "../../src/runtime/event-encoding.js";

const texts = ["", "tok ", "é漢😀", "lone \ud800 surrogate", "x".repeat(127), "y".repeat(128), "z".repeat(20_000)];

function sameAsToBinary(event: WorkerEvent): void {
  const expected = Buffer.from(toBinary(WorkerEventSchema, event));
  expect(Buffer.from(encodeWorkerEvent(event)).equals(expected)).toBe(true);
}

describe("encodeWorkerEvent", () => {
  it("writes text and reasoning deltas byte for byte as toBinary does", () => {
    for (const text of texts) {
      for (const [runId, blockId] of [
        ["run-1", "run-1-b0"],
        ["", ""],
        ["r".repeat(200), "b"],
      ] as const) {
        sameAsToBinary(create(WorkerEventSchema, { kind: { case: "textDelta", value: { runId, blockId, text } } }));
        sameAsToBinary(create(WorkerEventSchema, { kind: { case: "reasoningDelta", value: { runId, blockId, text } } }));
      }
    }
  });

  it("writes tool call deltas with any field empty byte for byte as toBinary does", () => {
    for (let mask = 0; mask < 32; mask++) {
      const pick = (bit: number, value: string): string => (mask & (1 << bit) ? value : "");
      sameAsToBinary(
        create(WorkerEventSchema, {
          kind: {
            case: "toolCallDelta",
            value: {
              runId: pick(0, "run-1"),
              blockId: pick(1, "run-1-b1"),
              toolCallId: pick(2, "call_1"),
              toolName: pick(3, "fs.read"),
              argumentsDelta: pick(4, '{"path": "é'),
            },
          },
        }),
      );
    }
  });

  it("takes the direct path for deltas (a Buffer; toBinary returns a plain Uint8Array)", () => {
    const event = create(WorkerEventSchema, { kind: { case: "textDelta", value: { runId: "run-1", blockId: "b", text: "t" } } });
    expect(Buffer.isBuffer(encodeWorkerEvent(event))).toBe(true);
    expect(Buffer.isBuffer(toBinary(WorkerEventSchema, event))).toBe(false);
  });

  it("encodes durable events, events with a time and unknown fields through toBinary", () => {
    const delta = { case: "textDelta" as const, value: { runId: "run-1", blockId: "b", text: "t" } };
    sameAsToBinary(create(WorkerEventSchema, { seq: 7n, cursor: "w-7", kind: delta }));
    sameAsToBinary(create(WorkerEventSchema, { time: timestampFromDate(new Date(0)), kind: delta }));
    sameAsToBinary(create(WorkerEventSchema, { kind: { case: "runChanged", value: { runId: "run-1" } } }));
    sameAsToBinary(create(WorkerEventSchema));
    const withUnknown = create(WorkerEventSchema, { kind: delta });
    withUnknown.$unknown = [{ no: 99, wireType: 0, data: new Uint8Array([1]) }];
    sameAsToBinary(withUnknown);
  });
});
