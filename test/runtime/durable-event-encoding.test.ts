import { clone, create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { TimestampSchema, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { WorkerRefSchema } from "../../gen/worker_runtime/v1/common_pb.js";
import { describe, expect, it } from "vitest";
import {
  RetryScheduledSchema,
  RuntimeEventSchema,
  WorkerEventSchema,
  type RuntimeEvent,
  type WorkerEvent,
} from "../../gen/worker_runtime/v1/events_pb.js";
import { RunSchema, RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { TranscriptEntrySchema } from "../../gen/worker_runtime/v1/transcript_pb.js";
import { WorkerSchema, WorkerStatus } from "../../gen/worker_runtime/v1/worker_pb.js";
import { sealPayload } from "../../src/runtime/durable-event-encoding.js";
import { encodeRuntimeEvent, encodeWorkerEvent } from "../../src/runtime/event-encoding.js";

const ref = { runtimeId: "rt-1", workerId: "w-1" };
const run = create(RunSchema, {
  runId: "run-1",
  worker: ref,
  input: { text: "héllo 漢 😀" },
  status: RunStatus.RUNNING,
  usage: { inputTokens: 10n, outputTokens: 300n },
  createdAt: timestampFromDate(new Date(1_700_000_000_123)),
});
const worker = create(WorkerSchema, {
  ref,
  status: WorkerStatus.RUNNING,
  activeRunId: "run-1",
  capabilities: ["fs.read"],
  lastEventSeq: 41n,
});
const entry = create(TranscriptEntrySchema, {
  seq: 3n,
  runId: "run-1",
  blockId: "run-1-b0",
  content: { case: "assistantMessage", value: { text: "answer" } },
});

const seqs = [0n, 1n, 127n, 128n, 300_000n, 2n ** 32n - 1n, 2n ** 32n, 2n ** 63n];
const cursors = ["", "w1-7", "c".repeat(200), "é漢😀"];
const times = [
  undefined,
  create(TimestampSchema, {}),
  timestampFromDate(new Date(0)),
  timestampFromDate(new Date(1_700_000_000_000)),
  timestampFromDate(new Date(1_700_000_000_001)),
  create(TimestampSchema, { seconds: 4_294_967_296n, nanos: 5 }),
  create(TimestampSchema, { seconds: -5n, nanos: 0 }),
];

function sameWorkerBytes(event: WorkerEvent): void {
  const expected = Buffer.from(toBinary(WorkerEventSchema, event));
  expect(Buffer.from(encodeWorkerEvent(event)).equals(expected)).toBe(true);
}

function sameRuntimeBytes(event: RuntimeEvent): void {
  const expected = Buffer.from(toBinary(RuntimeEventSchema, event));
  expect(Buffer.from(encodeRuntimeEvent(event)).equals(expected)).toBe(true);
}

describe("durable event encoding", () => {
  it("writes worker events of every durable kind byte for byte as toBinary does", () => {
    const kinds: WorkerEvent["kind"][] = [
      { case: "runChanged", value: run },
      { case: "workerChanged", value: worker },
      { case: "transcriptAppended", value: entry },
      { case: "runChanged", value: create(RunSchema) },
      { case: "retryScheduled", value: create(RetryScheduledSchema, { runId: "run-1" }) },
    ];
    for (const kind of kinds)
      for (const seq of seqs)
        for (const cursor of cursors) for (const time of times) sameWorkerBytes(create(WorkerEventSchema, { seq, cursor, time, kind }));
  });

  it("writes runtime events of every kind byte for byte as toBinary does", () => {
    const kinds: RuntimeEvent["kind"][] = [
      { case: "workerCreated", value: worker },
      { case: "workerUpdated", value: worker },
      { case: "workerRemoved", value: create(WorkerRefSchema, ref) },
      { case: "runChanged", value: run },
    ];
    for (const kind of kinds)
      for (const seq of seqs)
        for (const cursor of cursors) for (const time of times) sameRuntimeBytes(create(RuntimeEventSchema, { seq, cursor, time, kind }));
    sameRuntimeBytes(create(RuntimeEventSchema, { seq: 1n }));
  });

  it("takes the direct path for both event messages (a Buffer; toBinary returns a plain Uint8Array)", () => {
    const kind = { case: "runChanged" as const, value: run };
    expect(Buffer.isBuffer(encodeWorkerEvent(create(WorkerEventSchema, { seq: 1n, kind })))).toBe(true);
    expect(Buffer.isBuffer(encodeRuntimeEvent(create(RuntimeEventSchema, { seq: 1n, kind })))).toBe(true);
    expect(Buffer.isBuffer(toBinary(WorkerEventSchema, create(WorkerEventSchema, { seq: 1n, kind })))).toBe(false);
  });

  it("gives each event bytes of their own, not a slice of Node's buffer pool (stores keep them)", () => {
    const bytes = encodeWorkerEvent(create(WorkerEventSchema, { seq: 1n, kind: { case: "runChanged", value: run } }));
    expect(bytes.byteOffset).toBe(0);
    expect(bytes.buffer.byteLength).toBe(bytes.byteLength);
  });

  it("leaves events with unknown fields, in the envelope or its time, to toBinary", () => {
    const event = create(WorkerEventSchema, { seq: 5n, cursor: "w-5", kind: { case: "runChanged", value: run } });
    event.$unknown = [{ no: 99, wireType: 0, data: new Uint8Array([1]) }];
    sameWorkerBytes(event);
    const timed = create(WorkerEventSchema, { seq: 5n, time: timestampFromDate(new Date(5)), kind: { case: "runChanged", value: run } });
    if (timed.time) timed.time.$unknown = [{ no: 9, wireType: 0, data: new Uint8Array([2]) }];
    sameWorkerBytes(timed);
    const payloadUnknown = clone(RunSchema, run);
    payloadUnknown.$unknown = [{ no: 99, wireType: 0, data: new Uint8Array([3]) }];
    sameWorkerBytes(create(WorkerEventSchema, { seq: 6n, kind: { case: "runChanged", value: payloadUnknown } }));
  });

  it("encodes a sealed payload once: both streams carry the bytes it had when sealed", () => {
    const copy = sealPayload(RunSchema, clone(RunSchema, run));
    const workerEvent = create(WorkerEventSchema, { seq: 9n, cursor: "w-9", kind: { case: "runChanged", value: copy } });
    const runtimeEvent = create(RuntimeEventSchema, { seq: 4n, cursor: "r-4", kind: { case: "runChanged", value: copy } });
    sameWorkerBytes(workerEvent);
    sameRuntimeBytes(runtimeEvent);
    // Changing a sealed message breaks the promise sealPayload asks for; it shows the bytes are not encoded again.
    copy.status = RunStatus.COMPLETED;
    const decoded = fromBinary(WorkerEventSchema, encodeWorkerEvent(workerEvent));
    expect(decoded.kind.case === "runChanged" && decoded.kind.value.status).toBe(RunStatus.RUNNING);
    const decodedRuntime = fromBinary(RuntimeEventSchema, encodeRuntimeEvent(runtimeEvent));
    expect(decodedRuntime.kind.case === "runChanged" && decodedRuntime.kind.value.status).toBe(RunStatus.RUNNING);
  });
});

/** What an encoder does with `event`: its bytes (hex), or that it threw. */
function outcomeOf(encode: () => Uint8Array): string {
  try {
    return Buffer.from(encode()).toString("hex");
  } catch {
    return "refused";
  }
}

describe("values toBinary refuses or writes its own way", () => {
  const time = timestampFromDate(new Date(1_700_000_000_123));
  const delta = { $typeName: "worker_runtime.v1.TextDelta", runId: "run-1", blockId: "b", text: "t" };
  const odd: Array<[string, Record<string, unknown>]> = [
    ["a negative seq", { seq: -1n, kind: { case: "runChanged", value: run } }],
    ["a fraction in the time's nanos", { seq: 2n, time: { ...time, nanos: 1.5 }, kind: { case: "runChanged", value: run } }],
    ["nanos past int32", { seq: 2n, time: { ...time, nanos: 2 ** 31 }, kind: { case: "runChanged", value: run } }],
    [
      "a time of another type",
      { seq: 2n, time: { ...time, $typeName: "google.protobuf.Duration" }, kind: { case: "runChanged", value: run } },
    ],
    ["a payload of another type", { seq: 2n, kind: { case: "runChanged", value: worker } }],
    ["an event of another type", { $typeName: "worker_runtime.v1.RuntimeEvent", seq: 2n, kind: { case: "runChanged", value: run } }],
    ["a number as the cursor", { seq: 2n, cursor: 5, kind: { case: "runChanged", value: run } }],
    ["a delta of another type", { kind: { case: "reasoningDelta", value: delta } }],
    ["a delta whose text is a number", { kind: { case: "textDelta", value: { ...delta, text: 5 } } }],
    ["a delta in an event of another type", { $typeName: "worker_runtime.v1.RuntimeEvent", kind: { case: "textDelta", value: delta } }],
  ];
  it.each(odd)("%s: the same bytes or the same refusal as toBinary", (_name, fields) => {
    const event = { ...create(WorkerEventSchema), ...fields } as unknown as WorkerEvent;
    expect(outcomeOf(() => encodeWorkerEvent(event))).toBe(outcomeOf(() => toBinary(WorkerEventSchema, event)));
  });
});
