import { create, type DescMessage, fromBinary, type Message, toBinary } from "@bufbuild/protobuf";
import { StructSchema } from "@bufbuild/protobuf/wkt";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WatchWorkerResponseSchema } from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import { RunSchema, StopReason } from "../../gen/worker_runtime/v1/run_pb.js";
import { ToolCallSchema, TranscriptEntrySchema } from "../../gen/worker_runtime/v1/transcript_pb.js";
import { WorkerSchema } from "../../gen/worker_runtime/v1/worker_pb.js";
import { WorkerEventSchema, RuntimeEventSchema } from "../../gen/worker_runtime/v1/events_pb.js";
import { createMemoryStore, type RuntimeStore } from "../../src/runtime/index.js";
import { createMessageEncoder } from "../../src/runtime/message-encoder.js";
import { isPlainMessageType } from "../../src/runtime/plain-message-type.js";
import { startHarness, type Harness } from "../support/harness.js";
import { ScriptedBackend, type RunScript } from "../support/scripted-backend.js";
import { allKindsSchema, genMessageTypes, randomMessage } from "../support/random-messages.js";
import { seededRandom } from "../support/seeded-random.js";

/**
 * createMessageEncoder must write exactly the bytes of protobuf-es's
 * toBinary: over random messages of every message type in gen/ and of a
 * test type with every field kind (edge values included), over the runs,
 * workers, transcript entries and events a real runtime produces, and over
 * messages it must leave to toBinary (unknown fields, invalid values), where
 * the outcome (bytes or error) must be toBinary's. A planned encoding returns
 * a Buffer (toBinary a plain Uint8Array): that is how these tests see that
 * the planned path, not the fallback, wrote the bytes.
 */

/** What toBinary does with `message`: its bytes or its error message. */
function outcome(run: () => Uint8Array): { bytes?: string; error?: string } {
  try {
    return { bytes: Buffer.from(run()).toString("hex") };
  } catch (error) {
    return { error: error instanceof Error ? error.message : String(error) };
  }
}

/** The encoder's bytes are toBinary's, written by the planned path, and decode back to a message that encodes the same. */
function expectPlannedSameAsToBinary(schema: DescMessage, message: Message): void {
  const expected = toBinary(schema, message);
  const actual = createMessageEncoder(schema)(message);
  // Compared as hex only when they differ: a readable failure without the cost on every message.
  if (!Buffer.from(actual).equals(Buffer.from(expected)))
    expect(Buffer.from(actual).toString("hex")).toBe(Buffer.from(expected).toString("hex"));
  if (!Buffer.isBuffer(actual)) expect.fail(`${schema.typeName} was not encoded by the planned path`);
  const again = createMessageEncoder(schema)(fromBinary(schema, actual));
  if (!Buffer.from(again).equals(Buffer.from(expected))) expect.fail(`${schema.typeName} decoded and encoded again differs`);
}

describe("createMessageEncoder against toBinary", () => {
  const { all, intKeys } = allKindsSchema();

  it("has a test type with every scalar type singular, optional, packed and unpacked, enums, oneofs, maps and 64-bit strings", () => {
    const kinds = new Set(all.fields.map((f) => `${f.fieldKind}:${f.fieldKind === "list" ? f.packed : f.presence}`));
    expect(kinds.size).toBeGreaterThanOrEqual(6);
    expect(all.fields.filter((f) => f.fieldKind === "list" && f.packed).length).toBeGreaterThanOrEqual(14);
    expect(all.fields.filter((f) => f.fieldKind === "list" && !f.packed).length).toBeGreaterThanOrEqual(15);
    expect(all.fields.filter((f) => f.fieldKind === "scalar" && f.longAsString).length).toBe(2);
    expect(all.field.cInt64?.oneof?.localName).toBe("choice");
    expect(all.field.mChild?.fieldKind).toBe("map");
  });

  // CPU-bound and deterministic (~10-20 s idle): the wide timeout is for a loaded machine, where it took 67 s.
  it("writes random messages of the every-kind type exactly as toBinary (3,000 messages, fixed seed)", { timeout: 240_000 }, () => {
    const random = seededRandom(9);
    for (let i = 0; i < 3000; i++) expectPlannedSameAsToBinary(all, randomMessage(all, random));
  });

  it("writes random messages of every message type in gen/ exactly as toBinary (30 per type, fixed seed)", async () => {
    const types = await genMessageTypes();
    expect(types.length).toBeGreaterThan(80);
    expect(types.map((t) => t.typeName)).toContain("worker_runtime.v1.Run");
    const random = seededRandom(42);
    for (const desc of types) {
      // Every type gen/ reaches is plain (no wrappers or Struct), so all of them are planned.
      expect(isPlainMessageType(desc), desc.typeName).toBe(true);
      expectPlannedSameAsToBinary(desc, create(desc));
      for (let i = 0; i < 30; i++) expectPlannedSameAsToBinary(desc, randomMessage(desc, random));
    }
  });

  it("leaves a message with unknown fields at any level to toBinary, which writes them", () => {
    const random = seededRandom(7);
    const encode = createMessageEncoder(all);
    for (let i = 0; i < 200; i++) {
      const message = randomMessage(all, random) as Message & { child?: Message; children: Message[] };
      const unknown = [{ no: 9001, wireType: WireType.Varint, data: new BinaryWriter().uint64(5n).finish() }];
      const holder = i % 3 === 0 ? message : (message.child ?? message.children[0] ?? message);
      holder.$unknown = unknown;
      const bytes = encode(message);
      expect(Buffer.from(bytes).equals(Buffer.from(toBinary(all, message)))).toBe(true);
      expect(Buffer.isBuffer(bytes)).toBe(false);
    }
  });

  it("fails on invalid values exactly as toBinary does, or writes its bytes", () => {
    const encode = createMessageEncoder(all);
    const cases: Array<[string, unknown]> = [
      ["sInt32", 2 ** 31],
      ["sInt32", 1.5],
      ["sInt32", "7"],
      ["sInt32", "0"],
      ["sUint32", -1],
      ["sFixed32", 2 ** 32],
      ["sSfixed32", -(2 ** 31) - 1],
      ["sSint32", Number.NaN],
      ["sFloat", 1e39],
      ["sFloat", "1.5"],
      ["sDouble", "2"],
      ["sString", 5],
      ["sString", undefined],
      ["sBytes", "abc"],
      ["sBytes", [1, 2]],
      ["sBool", "yes"],
      ["sBool", 0],
      ["sInt64", 2n ** 64n],
      ["sInt64", "12"],
      ["sInt64", "x"],
      ["sInt64", 5],
      ["sUint64", -1n],
      ["sSint64", 1.5],
      ["e", 2 ** 31],
      ["e", "1"],
      ["oInt32", undefined],
      ["oString", 3],
      ["child", { $typeName: "enc.Other" }],
      ["child", create(intKeys)],
      ["children", [undefined]],
      ["children", "x"],
      ["rInt32", [1, 2 ** 40]],
      ["rString", [null]],
      ["mString", { a: undefined }],
      ["mChild", { a: 1 }],
      ["mInt64", { a: "z" }],
      ["mString", null],
      ["choice", { case: "cInt64", value: undefined }],
      ["choice", { case: "cChild", value: undefined }],
      ["choice", { case: "nope", value: 1 }],
      ["choice", undefined],
    ];
    for (const [name, value] of cases) {
      const message = create(all) as unknown as Record<string, unknown>;
      message[name] = value;
      const expected = outcome(() => toBinary(all, message as unknown as Message));
      expect(
        outcome(() => encode(message as unknown as Message)),
        `${name} = ${String(value)}`,
      ).toEqual(expected);
    }
    // A nested message with a wrong type name fails as toBinary fails.
    const nested = create(all) as unknown as Record<string, unknown>;
    nested.child = { ...create(all), $typeName: "enc.Wrong", sInt32: 1 };
    expect(outcome(() => encode(nested as unknown as Message))).toEqual(outcome(() => toBinary(all, nested as unknown as Message)));
  });

  it("leaves types it does not plan (non-string map keys, Struct) to toBinary", () => {
    const message = create(intKeys, { m: { 1: "a", [-5]: "b" } } as never);
    const bytes = createMessageEncoder(intKeys)(message);
    expect(Buffer.from(bytes).equals(Buffer.from(toBinary(intKeys, message)))).toBe(true);
    expect(Buffer.isBuffer(bytes)).toBe(false);
    const struct = create(StructSchema, { fields: { a: { kind: { case: "numberValue", value: 1 } } } });
    expect(Buffer.from(createMessageEncoder(StructSchema)(struct)).equals(Buffer.from(toBinary(StructSchema, struct)))).toBe(true);
  });
});

/** A run with every kind of event: text (non-ASCII too), reasoning, tool calls, a retry, a discard, usage. */
const everything: RunScript = async (request, sink) => {
  const block = (n: number): string => `${request.run.runId}-b${n}`;
  sink.turn();
  sink.reasoningDelta(block(0), "thinking… ");
  await sink.commit({ case: "reasoning", value: { $typeName: "worker_runtime.v1.Reasoning", text: "thinking… done" } }, block(0));
  sink.retry({ attempt: 1, delayMs: 250, reason: "rate limited", httpStatus: 429, budgetRemainingMs: 60_000 });
  sink.toolCallDelta(block(1), { toolCallId: "c1", toolName: "read_file" });
  sink.toolCallDelta(block(1), { argumentsDelta: '{"path":"a/é.txt"}' });
  await sink.commit(
    { case: "toolCall", value: create(ToolCallSchema, { toolCallId: "c1", toolName: "read_file", argumentsJson: '{"path":"a/é.txt"}' }) },
    block(1),
  );
  sink.toolCallDelta(block(2), { toolCallId: "c2", toolName: "cut" });
  sink.discardBlock(block(2));
  const text = `Hello, wörld ☃ 😀 ${"x".repeat(300)}`;
  sink.textDelta(block(3), text);
  await sink.commit({ case: "assistantMessage", value: { $typeName: "worker_runtime.v1.AssistantMessage", text } }, block(3));
  sink.addUsage({ inputTokens: 1234567890123n, outputTokens: 42n });
  return { kind: "completed", stopReason: StopReason.END_TURN };
};

describe("createMessageEncoder on what a real runtime produces", () => {
  let harness: Harness;
  const produced: Array<{ schema: DescMessage; message: Message }> = [];

  beforeAll(async () => {
    // The store records the objects the core hands it: runs, worker snapshots, transcript entries, and its encoded events.
    const store = createMemoryStore();
    const recording = new Proxy(store, {
      get(target, property, receiver) {
        const value = Reflect.get(target, property, receiver) as unknown;
        if (typeof value !== "function") return value;
        return (...args: unknown[]) => {
          if (property === "putRun") produced.push({ schema: RunSchema, message: args[1] as Message });
          if (property === "putWorker") produced.push({ schema: WorkerSchema, message: (args[0] as { worker: Message }).worker });
          if (property === "appendTranscript")
            for (const entry of args[1] as Message[]) produced.push({ schema: TranscriptEntrySchema, message: entry });
          if (property === "appendEvents") {
            for (const event of args[1] as Array<{ bytes: Uint8Array }>)
              produced.push({ schema: WorkerEventSchema, message: fromBinary(WorkerEventSchema, event.bytes) });
          }
          if (property === "appendRuntimeEvents") {
            for (const event of args[0] as Array<{ bytes: Uint8Array }>)
              produced.push({ schema: RuntimeEventSchema, message: fromBinary(RuntimeEventSchema, event.bytes) });
          }
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    }) as RuntimeStore;
    harness = await startHarness({ executionBackend: new ScriptedBackend(everything), store: recording });
    const clients = harness.connect("grpc");
    const { worker } = await clients.catalog.createWorker({
      runtimeId: harness.runtime.runtimeId,
      displayName: "encoder ☃",
      capabilities: [],
      labels: { team: "core", "tier.x": "1" },
    });
    const watch = new AbortController();
    const responses = (async () => {
      for await (const response of clients.observation.watchWorker({ worker: worker?.ref }, { signal: watch.signal })) {
        produced.push({ schema: WatchWorkerResponseSchema, message: response });
        if (response.events.filter((e) => e.kind.case === "runChanged" && e.kind.value.status === 4).length > 0) {
          const completed = produced.filter(
            (p) => p.schema === RunSchema && (p.message as unknown as { status: number }).status === 4,
          ).length;
          if (completed >= 2) break;
        }
      }
    })().catch(() => undefined);
    for (let i = 0; i < 2; i++) await clients.interaction.sendInput({ worker: worker?.ref, input: { text: `go ${i} é` } });
    const deadline = Date.now() + 10_000;
    while (
      produced.filter((p) => p.schema === RunSchema && (p.message as unknown as { status: number }).status === 4).length < 2 &&
      Date.now() < deadline
    ) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    watch.abort();
    await responses;
  });
  afterAll(async () => {
    await harness?.close();
  });

  it("writes every run, worker, transcript entry and event the runtime produced exactly as toBinary", () => {
    const count = (schema: DescMessage) => produced.filter((p) => p.schema === schema).length;
    expect(count(RunSchema)).toBeGreaterThan(4);
    expect(count(WorkerSchema)).toBeGreaterThan(1);
    expect(count(TranscriptEntrySchema)).toBeGreaterThan(4);
    expect(count(WorkerEventSchema)).toBeGreaterThan(10);
    expect(count(RuntimeEventSchema)).toBeGreaterThan(3);
    expect(count(WatchWorkerResponseSchema)).toBeGreaterThan(3);
    for (const { schema, message } of produced) expectPlannedSameAsToBinary(schema, message);
  });
});
