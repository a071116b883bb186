import { create, fromBinary, isMessage, toBinary } from "@bufbuild/protobuf";
import { BinaryWriter } from "@bufbuild/protobuf/wire";
import { describe, expect, it } from "vitest";
import { WorkerEventSchema, type WorkerEvent } from "../../gen/worker_runtime/v1/events_pb.js";
import { WatchWorkerResponseSchema } from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import type { StreamItem } from "../../src/runtime/subscription.js";
import {
  encodedBatch,
  encodedBatchFrame,
  eventsAsUnknownFields,
  GRPC_FRAME_HEADER_BYTES,
  lengthDelimited,
} from "../../src/runtime/wire-batch.js";

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

describe("encoded batch", () => {
  const events = ["a", "é漢😀", "x".repeat(200)].map(delta);
  const items = (): StreamItem<WorkerEvent>[] => events.map((event) => ({ seq: 0n, bytes: toBinary(WorkerEventSchema, event) }));
  const expected = toBinary(WatchWorkerResponseSchema, create(WatchWorkerResponseSchema, { events }));

  it("is a ready gRPC frame: header (not compressed, body length) and the events as the response's encoding", () => {
    const frame = encodedBatchFrame(encodedBatch(WatchWorkerResponseSchema, 1, items())) as Uint8Array;
    expect(frame[0]).toBe(0);
    expect(Buffer.from(frame).readUInt32BE(1)).toBe(expected.length);
    expect(Buffer.from(frame.subarray(GRPC_FRAME_HEADER_BYTES)).equals(Buffer.from(expected))).toBe(true);
  });

  it("writes every byte of its frame, which comes from Node's buffer pool (never stale pool bytes)", () => {
    for (let round = 0; round < 200; round++) {
      // Dirty the pool where the next frame will be taken from.
      Buffer.allocUnsafe(300).fill(0xff);
      const frame = encodedBatchFrame(encodedBatch(WatchWorkerResponseSchema, 1, items())) as Uint8Array;
      expect(frame[0]).toBe(0);
      expect(Buffer.from(frame.subarray(GRPC_FRAME_HEADER_BYTES)).equals(Buffer.from(expected))).toBe(true);
    }
  });

  it("is an ordinary message to protobuf-es (the Connect and gRPC-Web paths), events as unknown fields", () => {
    const batch = encodedBatch(WatchWorkerResponseSchema, 1, items());
    expect(isMessage(batch, WatchWorkerResponseSchema)).toBe(true);
    expect(batch.events).toEqual([]);
    expect(batch.snapshot).toBeUndefined();
    expect(toBinary(WatchWorkerResponseSchema, batch)).toEqual(expected);
    expect(fromBinary(WatchWorkerResponseSchema, toBinary(WatchWorkerResponseSchema, batch)).events).toEqual(events);
  });

  it("gives each batch its own empty lists, and no frame for any other message", () => {
    const first = encodedBatch(WatchWorkerResponseSchema, 1, items());
    const second = encodedBatch(WatchWorkerResponseSchema, 1, items());
    expect(first.events).not.toBe(second.events);
    expect(encodedBatchFrame(create(WatchWorkerResponseSchema, { events }))).toBeUndefined();
    expect(encodedBatchFrame(undefined)).toBeUndefined();
  });

  it("encodes an empty batch as an empty message", () => {
    const frame = encodedBatchFrame(encodedBatch(WatchWorkerResponseSchema, 1, [])) as Uint8Array;
    expect(Array.from(frame)).toEqual([0, 0, 0, 0, 0]);
  });
});
