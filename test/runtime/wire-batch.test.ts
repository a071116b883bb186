import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { describe, expect, it } from "vitest";
import { WorkerEventSchema, type WorkerEvent } from "../../gen/worker_runtime/v1/events_pb.js";
import { WatchWorkerResponseSchema } from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import type { StreamItem } from "../../src/runtime/subscription.js";
import { eventsAsUnknownFields, lengthDelimited } from "../../src/runtime/wire-batch.js";

const delta = (text: string): WorkerEvent =>
  create(WorkerEventSchema, { kind: { case: "textDelta", value: { runId: "run-1", blockId: "run-1-b0", text } } });

describe("wire batch", () => {
  it("prefixes bytes with their varint length exactly as protobuf-es does", () => {
    for (const size of [0, 1, 127, 128, 300, 16_383, 16_384, 2_097_152]) {
      const bytes = new Uint8Array(size).fill(7);
      const expected = new BinaryWriter().bytes(bytes).finish();
      expect(Buffer.from(lengthDelimited(bytes)).equals(Buffer.from(expected)), `size ${size}`).toBe(true);
    }
  });

  it("sends pre-encoded events that every client decodes as ordinary events", () => {
    const events = ["a", "é漢😀", "x".repeat(200)].map(delta);
    const items: StreamItem<WorkerEvent>[] = events.map((event) => ({ seq: 0n, bytes: toBinary(WorkerEventSchema, event) }));
    const batch = create(WatchWorkerResponseSchema);
    batch.$unknown = eventsAsUnknownFields(1, items);
    const bytes = toBinary(WatchWorkerResponseSchema, batch);
    expect(bytes).toEqual(toBinary(WatchWorkerResponseSchema, create(WatchWorkerResponseSchema, { events })));
    const decoded = fromBinary(WatchWorkerResponseSchema, bytes);
    expect(decoded.events.map((e) => (e.kind.case === "textDelta" ? e.kind.value.text : ""))).toEqual(["a", "é漢😀", "x".repeat(200)]);
  });

  it("frames each item once for every subscriber's batches", () => {
    const item: StreamItem<WorkerEvent> = { seq: 0n, bytes: toBinary(WorkerEventSchema, delta("shared")) };
    const [first] = eventsAsUnknownFields(1, [item]);
    const [second] = eventsAsUnknownFields(1, [item]);
    expect(second?.data).toBe(first?.data);
  });
});
