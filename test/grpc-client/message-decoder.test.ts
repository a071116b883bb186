import { create, type DescMessage, fromBinary, type Message, toBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema, StructSchema, TimestampSchema } from "@bufbuild/protobuf/wkt";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { once } from "node:events";
import * as http2 from "node:http2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ProfileSchema } from "../../gen/worker_runtime/v1/profile_pb.js";
import { RunStatus, StopReason } from "../../gen/worker_runtime/v1/run_pb.js";
import { ToolCallSchema } from "../../gen/worker_runtime/v1/transcript_pb.js";
import {
  WatchRuntimeRequestSchema,
  WatchRuntimeResponseSchema,
  WatchWorkerRequestSchema,
  WatchWorkerResponseSchema,
  file_worker_runtime_v1_worker_observation,
} from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import { createMessageDecoder } from "../../src/grpc-client/message-decoder.js";
import { startHarness, type Harness } from "../support/harness.js";
import { grpcFrames, rawGrpcRequest } from "../support/raw-grpc.js";
import { grpcFrame } from "../support/raw-http2.js";
import { ScriptedBackend, type RunScript } from "../support/scripted-backend.js";

/**
 * createMessageDecoder must give exactly what protobuf-es's fromBinary
 * gives: the same values, types and property order, for every message a
 * real runtime sends on its watch streams (read raw off the wire), with
 * unknown fields added at every level, and for concatenated encodings
 * (which protobuf-es merges).
 */

/** A run that sends every kind of live and durable event: text (non-ASCII too), reasoning, tool calls, a retry, a discard. */
const everything: RunScript = async (request, sink) => {
  const block = (n: number): string => `${request.run.runId}-b${n}`;
  sink.turn();
  sink.reasoningDelta(block(0), "thinking… ");
  sink.reasoningDelta(block(0), "done");
  await sink.commit({ case: "reasoning", value: { $typeName: "worker_runtime.v1.Reasoning", text: "thinking… done" } }, block(0));
  sink.retry({ attempt: 1, delayMs: 250, reason: "rate limited", httpStatus: 429, budgetRemainingMs: 60_000 });
  sink.toolCallDelta(block(1), { toolCallId: "c1", toolName: "read_file" });
  sink.toolCallDelta(block(1), { argumentsDelta: '{"path":' });
  sink.toolCallDelta(block(1), { argumentsDelta: '"a/é.txt"}' });
  await sink.commit(
    { case: "toolCall", value: create(ToolCallSchema, { toolCallId: "c1", toolName: "read_file", argumentsJson: '{"path":"a/é.txt"}' }) },
    block(1),
  );
  sink.toolCallDelta(block(2), { toolCallId: "c2", toolName: "cut" });
  sink.discardBlock(block(2));
  const text = ["Hello", ", wörld ☃ ", "😀 ", "x".repeat(300), ""].join("");
  for (const piece of ["Hello", ", wörld ☃ ", "😀 ", "x".repeat(300)]) sink.textDelta(block(3), piece);
  await sink.commit({ case: "assistantMessage", value: { $typeName: "worker_runtime.v1.AssistantMessage", text } }, block(3));
  sink.addUsage({ inputTokens: 1234567890123n, outputTokens: 42n });
  return { kind: "completed", stopReason: StopReason.END_TURN };
};

/** The messages of a raw gRPC server stream (uncompressed: no grpc-accept-encoding), as bytes, until `enough` says so or `stop` resolves. */
async function rawMessages(
  session: http2.ClientHttp2Session,
  path: string,
  request: Uint8Array,
  enough: (body: Uint8Array) => boolean,
  stop: Promise<unknown> = new Promise(() => undefined),
): Promise<Uint8Array[]> {
  const stream = rawGrpcRequest(session, path, grpcFrame(request));
  void stop.then(() => stream.close(http2.constants.NGHTTP2_CANCEL));
  await once(stream, "response");
  const bodies: Uint8Array[] = [];
  try {
    for await (const frame of grpcFrames(stream)) {
      expect(frame.flag).toBe(0);
      bodies.push(new Uint8Array(frame.body));
      if (enough(bodies.at(-1) as Uint8Array)) break;
    }
  } catch (error) {
    // Closed by `stop`: what came before it is the capture.
    if (!stream.destroyed) throw error;
  }
  stream.close(http2.constants.NGHTTP2_CANCEL);
  return bodies;
}

/** Every own key of every object in `value`, in insertion order, with its path: what toStrictEqual does not compare. */
function keyOrder(value: unknown, path = "$", out: string[] = []): string[] {
  if (value === null || typeof value !== "object" || ArrayBuffer.isView(value)) return out;
  out.push(`${path}: ${Object.keys(value).join(",")}`);
  for (const [key, child] of Object.entries(value)) keyOrder(child, `${path}.${key}`, out);
  return out;
}

/** The decoder's result for `bytes` is fromBinary's, value for value and key for key. */
function expectSameAsFromBinary(schema: DescMessage, bytes: Uint8Array): void {
  const expected = fromBinary(schema, bytes);
  const actual = createMessageDecoder(schema)(bytes);
  expect(actual).toStrictEqual(expected);
  expect(keyOrder(actual)).toEqual(keyOrder(expected));
}

/** Unknown fields of every wire type (field numbers no message here uses). */
function unknownFields(): Array<{ no: number; wireType: WireType; data: Uint8Array }> {
  const field = (no: number, wireType: WireType, write: (w: BinaryWriter) => void) => {
    const w = new BinaryWriter();
    write(w);
    return { no, wireType, data: w.finish() };
  };
  return [
    field(9001, WireType.Varint, (w) => w.uint64(123456789012345n)),
    field(9002, WireType.Bit64, (w) => w.fixed64(7n)),
    field(9003, WireType.LengthDelimited, (w) => w.bytes(new Uint8Array([1, 2, 3]))),
    field(9004, WireType.Bit32, (w) => w.fixed32(9)),
  ];
}

/** The same message with unknown fields added to it and to every message inside it. */
function withUnknownEverywhere(value: unknown): void {
  if (value === null || typeof value !== "object" || ArrayBuffer.isView(value)) return;
  for (const child of Object.values(value)) withUnknownEverywhere(child);
  if ("$typeName" in value) (value as Message).$unknown = unknownFields();
}

describe("createMessageDecoder against fromBinary", () => {
  let harness: Harness;
  let session: http2.ClientHttp2Session;
  const captured: Array<{ schema: DescMessage; bytes: Uint8Array }> = [];

  beforeAll(async () => {
    harness = await startHarness({ executionBackend: new ScriptedBackend(everything) });
    session = http2.connect(harness.baseUrl);
    const runtimeId = harness.runtime.runtimeId;
    const clients = harness.connect("grpc");
    const { worker } = await clients.catalog.createWorker({
      runtimeId,
      displayName: "decoder ☃",
      capabilities: [],
      labels: { team: "core", "tier.x": "1" },
    });
    const ref = worker?.ref;
    // Two runs: the worker's stream is read until the second one completes, the runtime's until then.
    let completed = 0;
    const secondRunDone = (body: Uint8Array): boolean => {
      const { events } = fromBinary(WatchWorkerResponseSchema, body);
      completed += events.filter((e) => e.kind.case === "runChanged" && e.kind.value.status === RunStatus.COMPLETED).length;
      return completed === 2;
    };
    const workerRequest = toBinary(WatchWorkerRequestSchema, create(WatchWorkerRequestSchema, { worker: ref }));
    const byWorker = rawMessages(session, "/worker_runtime.v1.WorkerObservation/WatchWorker", workerRequest, secondRunDone);
    const runtimeRequest = toBinary(WatchRuntimeRequestSchema, create(WatchRuntimeRequestSchema, { runtimeId }));
    const byRuntime = rawMessages(session, "/worker_runtime.v1.WorkerObservation/WatchRuntime", runtimeRequest, () => false, byWorker);
    // Both streams have sent their snapshots before the runs start.
    await new Promise((resolve) => setTimeout(resolve, 200));
    for (let i = 0; i < 2; i++) await clients.interaction.sendInput({ worker: ref, input: { text: `go ${i}` } });
    for (const bytes of await byWorker) captured.push({ schema: WatchWorkerResponseSchema, bytes });
    for (const bytes of await byRuntime) captured.push({ schema: WatchRuntimeResponseSchema, bytes });
  });
  afterAll(async () => {
    session?.close();
    await harness?.close();
  });

  it("decodes every message a runtime's watch streams sent as fromBinary does", () => {
    expect(captured.length).toBeGreaterThan(25);
    const cases = new Set(
      captured.flatMap(({ schema, bytes }) =>
        (fromBinary(schema, bytes) as unknown as { events: Array<{ kind: { case?: string } }> }).events.map((e) => e.kind.case),
      ),
    );
    // The capture covers the event kinds whose decoding differs (maps, 64-bit ints, Timestamps, oneofs, non-ASCII text).
    for (const kind of [
      "runChanged",
      "transcriptAppended",
      "textDelta",
      "reasoningDelta",
      "toolCallDelta",
      "blockDiscarded",
      "retryScheduled",
    ]) {
      expect(cases).toContain(kind);
    }
    for (const { schema, bytes } of captured) expectSameAsFromBinary(schema, bytes);
  });

  it("keeps unknown fields at every level as fromBinary does", () => {
    for (const { schema, bytes } of captured) {
      const message = fromBinary(schema, bytes);
      withUnknownEverywhere(message);
      expectSameAsFromBinary(schema, toBinary(schema, message));
    }
  });

  it("merges concatenated encodings (repeated fields appended, messages merged, oneofs replaced) as fromBinary does", () => {
    for (let i = 0; i + 1 < captured.length; i++) {
      const [a, b] = [captured[i], captured[i + 1]] as [(typeof captured)[0], (typeof captured)[0]];
      if (a.schema !== b.schema) continue;
      expectSameAsFromBinary(a.schema, Buffer.concat([a.bytes, b.bytes, a.bytes]));
    }
  });

  it("honours readUnknownFields: false and fails on truncated input as fromBinary does", () => {
    const { schema, bytes } = captured.find((c) => c.bytes.length > 40) as (typeof captured)[0];
    const message = fromBinary(schema, bytes);
    withUnknownEverywhere(message);
    const extended = toBinary(schema, message);
    expect(createMessageDecoder(schema, { readUnknownFields: false })(extended)).toStrictEqual(
      fromBinary(schema, extended, { readUnknownFields: false }),
    );
    const cut = extended.subarray(0, extended.length - 3);
    expect(() => fromBinary(schema, cut)).toThrow();
    expect(() => createMessageDecoder(schema)(cut)).toThrow();
  });

  it("leaves types with special shapes or proto2 semantics to fromBinary", () => {
    const struct = create(StructSchema, { fields: { a: { kind: { case: "numberValue", value: 1 } } } });
    expectSameAsFromBinary(StructSchema, toBinary(StructSchema, struct));
    // A proto2 type (defaults, presence on the prototype) and plain proto3 types with optional and packed fields.
    expectSameAsFromBinary(FileDescriptorProtoSchema, toBinary(FileDescriptorProtoSchema, file_worker_runtime_v1_worker_observation.proto));
    expectSameAsFromBinary(TimestampSchema, toBinary(TimestampSchema, create(TimestampSchema, { seconds: -5n, nanos: 7 })));
    const profile = create(ProfileSchema, { name: "p", temperature: 0, tools: ["a", "b"] });
    expectSameAsFromBinary(ProfileSchema, toBinary(ProfileSchema, profile));
    expect(createMessageDecoder(ProfileSchema)(toBinary(ProfileSchema, profile)).temperature).toBe(0);
  });
});
