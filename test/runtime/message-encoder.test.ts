import {
  create,
  createFileRegistry,
  type DescField,
  type DescFile,
  type DescMessage,
  fromBinary,
  type Message,
  ScalarType,
  toBinary,
} from "@bufbuild/protobuf";
import {
  FieldDescriptorProto_Label,
  FieldDescriptorProto_Type,
  FieldOptions_JSType,
  FileDescriptorProtoSchema,
  file_google_protobuf_timestamp as timestampFile,
  StructSchema,
  type FieldDescriptorProto,
} from "@bufbuild/protobuf/wkt";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { readdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
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

type Random = () => number;
const pick = <T>(random: Random, values: readonly T[]): T => values[Math.floor(random() * values.length)] as T;

const STRINGS = [
  "",
  "a",
  "x".repeat(64),
  "y".repeat(65),
  "é",
  "日本語",
  "😀",
  "a😀b",
  "\ud800",
  "x\udc00y",
  "é".repeat(40),
  `${"z".repeat(70)}😀\ud83d`,
  "\0",
];
const INT32S = [0, 1, -1, 127, 128, 300, 2 ** 31 - 1, -(2 ** 31), -128, 16384];
const UINT32S = [0, 1, 127, 128, 2 ** 32 - 1, 2 ** 31, 16383, 2 ** 28];
const INT64S = [0n, 1n, -1n, 127n, 128n, 2n ** 63n - 1n, -(2n ** 63n), 2n ** 32n, -(2n ** 32n), 2n ** 35n + 5n, 1234567890123n];
const UINT64S = [0n, 1n, 127n, 128n, 2n ** 64n - 1n, 2n ** 32n, 2n ** 32n - 1n, 2n ** 56n, 1234567890123n];
const DOUBLES = [
  0,
  -0,
  Number.NaN,
  Number.POSITIVE_INFINITY,
  Number.NEGATIVE_INFINITY,
  1.5,
  -2.25,
  Number.MAX_VALUE,
  Number.MIN_VALUE,
  1e-300,
];
const FLOATS = [
  0,
  -0,
  Number.NaN,
  Number.POSITIVE_INFINITY,
  Number.NEGATIVE_INFINITY,
  1.5,
  3.4028234663852886e38,
  -3.4028234663852886e38,
  1e-45,
  0.1,
];

function scalarValue(random: Random, type: ScalarType, longAsString: boolean): unknown {
  const fresh = random() < 0.3;
  switch (type) {
    case ScalarType.STRING:
      return fresh
        ? String.fromCodePoint(...Array.from({ length: Math.floor(random() * 90) }, () => Math.floor(random() * 0x10ffff) & ~0x800))
        : pick(random, STRINGS);
    case ScalarType.BYTES:
      return fresh
        ? Uint8Array.from({ length: Math.floor(random() * 300) }, () => Math.floor(random() * 256))
        : pick(random, [new Uint8Array(0), Uint8Array.of(0), Uint8Array.of(1, 2, 255)]);
    case ScalarType.BOOL:
      return random() < 0.5;
    case ScalarType.DOUBLE:
      return fresh ? (random() - 0.5) * 10 ** Math.floor(random() * 40) : pick(random, DOUBLES);
    case ScalarType.FLOAT:
      return fresh ? Math.fround((random() - 0.5) * 1000) : pick(random, FLOATS);
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return fresh ? Math.floor(random() * 2 ** 32) - 2 ** 31 : pick(random, INT32S);
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return fresh ? Math.floor(random() * 2 ** 32) : pick(random, UINT32S);
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64: {
      const value = fresh
        ? BigInt.asIntN(64, BigInt(Math.floor(random() * 2 ** 53)) * BigInt(Math.floor(random() * 2 ** 20)))
        : pick(random, INT64S);
      return longAsString ? String(value) : value;
    }
    case ScalarType.UINT64:
    case ScalarType.FIXED64: {
      const value = fresh
        ? BigInt.asUintN(64, BigInt(Math.floor(random() * 2 ** 53)) * BigInt(Math.floor(random() * 2 ** 20)))
        : pick(random, UINT64S);
      return longAsString ? String(value) : value;
    }
  }
}

function enumValue(random: Random, field: DescField): number {
  const values = field.enum?.values.map((v) => v.number) ?? [0];
  return random() < 0.8 ? pick(random, values) : pick(random, [7777, -1, 2 ** 31 - 1, -(2 ** 31)]);
}

const MAP_KEYS = ["", "a", "1", "é", "😀", "long".repeat(30), "2", "b"];

/** A message of `desc` with random fields set (each kind, each oneof case or none), nested up to depth 3 and 12 messages. */
function randomMessage(desc: DescMessage, random: Random, depth = 0, budget = { left: 12 }): Message {
  const message = create(desc) as unknown as Record<string, unknown>;
  const nested = (type: DescMessage): Message =>
    depth < 3 && budget.left-- > 0 ? randomMessage(type, random, depth + 1, budget) : create(type);
  const single = (field: DescField): unknown => {
    if (field.message) return nested(field.message);
    if (field.enum) return enumValue(random, field);
    return scalarValue(random, field.scalar as ScalarType, "longAsString" in field && field.longAsString === true);
  };
  for (const member of desc.members) {
    if (member.kind === "oneof") {
      const field = pick(random, [undefined, ...member.fields]);
      if (field) message[member.localName] = { case: field.localName, value: single(field) };
      continue;
    }
    const field = member;
    if (random() < 0.25) continue;
    switch (field.fieldKind) {
      case "list": {
        const length = Math.floor(random() * 5);
        message[field.localName] = Array.from({ length }, () => {
          if (field.listKind === "message") return nested(field.message);
          if (field.listKind === "enum") return enumValue(random, field);
          return scalarValue(random, field.scalar, field.longAsString);
        });
        break;
      }
      case "map": {
        const map: Record<string, unknown> = {};
        for (let i = Math.floor(random() * 4); i > 0; i--) {
          const key = pick(random, MAP_KEYS);
          if (field.mapKind === "message") map[key] = nested(field.message);
          else if (field.mapKind === "enum") map[key] = enumValue(random, field);
          else map[key] = scalarValue(random, field.scalar, false);
        }
        message[field.localName] = map;
        break;
      }
      default:
        message[field.localName] = single(field);
    }
  }
  return message as unknown as Message;
}

/** Every message type of every file in gen/ and the files they import, nested types included. */
async function genMessageTypes(): Promise<DescMessage[]> {
  const root = fileURLToPath(new URL("../../gen/", import.meta.url));
  const files = new Set<DescFile>();
  const addFile = (file: DescFile): void => {
    if (files.has(file)) return;
    files.add(file);
    for (const dependency of file.dependencies) addFile(dependency);
  };
  const walk = async (dir: string): Promise<void> => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) await walk(full);
      else if (entry.name.endsWith("_pb.js")) {
        for (const value of Object.values(await import(full))) {
          if ((value as { kind?: string } | null)?.kind === "file") addFile(value as DescFile);
        }
      }
    }
  };
  await walk(root);
  const types: DescMessage[] = [];
  const addType = (desc: DescMessage): void => {
    types.push(desc);
    for (const nested of desc.nestedMessages) addType(nested);
  };
  for (const file of files) for (const desc of file.messages) addType(desc);
  return types;
}

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

// ---- A test type with every field kind ----

const T = FieldDescriptorProto_Type;
const SCALAR_TYPES: Array<[string, FieldDescriptorProto_Type]> = [
  ["double", T.DOUBLE],
  ["float", T.FLOAT],
  ["int64", T.INT64],
  ["uint64", T.UINT64],
  ["int32", T.INT32],
  ["fixed64", T.FIXED64],
  ["fixed32", T.FIXED32],
  ["bool", T.BOOL],
  ["string", T.STRING],
  ["bytes", T.BYTES],
  ["uint32", T.UINT32],
  ["sfixed32", T.SFIXED32],
  ["sfixed64", T.SFIXED64],
  ["sint32", T.SINT32],
  ["sint64", T.SINT64],
];

function allKindsSchema(): { all: DescMessage; intKeys: DescMessage } {
  const fields: Array<Partial<FieldDescriptorProto>> = [];
  const optionalOneofs: Array<{ name: string }> = [{ name: "choice" }];
  const single = (name: string, number: number, type: FieldDescriptorProto_Type, extra: Partial<FieldDescriptorProto> = {}) =>
    fields.push({ name, number, type, label: FieldDescriptorProto_Label.OPTIONAL, jsonName: name, ...extra });
  const repeated = (name: string, number: number, type: FieldDescriptorProto_Type, extra: Partial<FieldDescriptorProto> = {}) =>
    fields.push({ name, number, type, label: FieldDescriptorProto_Label.REPEATED, jsonName: name, ...extra });
  SCALAR_TYPES.forEach(([name, type], i) => {
    // Singular fields are declared out of number order: the encoder writes by number.
    single(`s_${name}`, 100 - i, type);
    optionalOneofs.push({ name: `_o_${name}` });
    single(`o_${name}`, 200 + i, type, { proto3Optional: true, oneofIndex: optionalOneofs.length - 1 });
    repeated(`r_${name}`, 300 + i, type);
    if (type !== T.STRING && type !== T.BYTES) repeated(`u_${name}`, 400 + i, type, { options: { packed: false } as never });
  });
  single("e", 1, T.ENUM, { typeName: ".enc.Color" });
  repeated("re", 2, T.ENUM, { typeName: ".enc.Color" });
  optionalOneofs.push({ name: "_oe" });
  single("oe", 3, T.ENUM, { typeName: ".enc.Color", proto3Optional: true, oneofIndex: optionalOneofs.length - 1 });
  single("child", 4, T.MESSAGE, { typeName: ".enc.All" });
  repeated("children", 5, T.MESSAGE, { typeName: ".enc.All" });
  single("ts", 6, T.MESSAGE, { typeName: ".google.protobuf.Timestamp" });
  single("big_str", 7, T.INT64, { options: { jstype: FieldOptions_JSType.JS_STRING } as never });
  single("ubig_str", 8, T.UINT64, { options: { jstype: FieldOptions_JSType.JS_STRING } as never });
  repeated("rbig_str", 9, T.SINT64, { options: { jstype: FieldOptions_JSType.JS_STRING } as never });
  // The oneof: members at 10-13 and one far away at 1000, with other fields between.
  single("c_string", 10, T.STRING, { oneofIndex: 0 });
  single("c_int64", 11, T.INT64, { oneofIndex: 0 });
  single("c_child", 12, T.MESSAGE, { typeName: ".enc.All", oneofIndex: 0 });
  single("c_enum", 13, T.ENUM, { typeName: ".enc.Color", oneofIndex: 0 });
  single("c_bytes", 1000, T.BYTES, { oneofIndex: 0 });
  const mapEntries: Array<[string, number, FieldDescriptorProto_Type, string?]> = [
    ["m_string", 20, T.STRING],
    ["m_int64", 21, T.INT64],
    ["m_child", 22, T.MESSAGE, ".enc.All"],
    ["m_enum", 23, T.ENUM, ".enc.Color"],
    ["m_bytes", 24, T.BYTES],
    ["m_double", 25, T.DOUBLE],
    ["m_sint32", 26, T.SINT32],
  ];
  const nestedType = mapEntries.map(([name, , type, typeName]) => ({
    name: `${entryName(name)}`,
    options: { mapEntry: true },
    field: [
      { name: "key", number: 1, type: T.STRING, label: FieldDescriptorProto_Label.OPTIONAL, jsonName: "key" },
      { name: "value", number: 2, type, label: FieldDescriptorProto_Label.OPTIONAL, jsonName: "value", ...(typeName ? { typeName } : {}) },
    ],
  }));
  for (const [name, number] of mapEntries) repeated(name, number, T.MESSAGE, { typeName: `.enc.All.${entryName(name)}` });
  const file = create(FileDescriptorProtoSchema, {
    name: "enc/all.proto",
    package: "enc",
    syntax: "proto3",
    dependency: ["google/protobuf/timestamp.proto"],
    enumType: [
      {
        name: "Color",
        value: [
          { name: "COLOR_UNSPECIFIED", number: 0 },
          { name: "COLOR_RED", number: 1 },
          { name: "COLOR_NEGATIVE", number: -3 },
        ],
      },
    ],
    messageType: [
      { name: "All", field: fields as never, oneofDecl: optionalOneofs, nestedType: nestedType as never },
      {
        name: "IntKeys",
        field: [
          {
            name: "m",
            number: 1,
            type: T.MESSAGE,
            label: FieldDescriptorProto_Label.REPEATED,
            typeName: ".enc.IntKeys.MEntry",
            jsonName: "m",
          },
        ],
        nestedType: [
          {
            name: "MEntry",
            options: { mapEntry: true },
            field: [
              { name: "key", number: 1, type: T.INT32, label: FieldDescriptorProto_Label.OPTIONAL, jsonName: "key" },
              { name: "value", number: 2, type: T.STRING, label: FieldDescriptorProto_Label.OPTIONAL, jsonName: "value" },
            ],
          },
        ],
      },
    ],
  });
  const registry = createFileRegistry(file, (name) => (name === "google/protobuf/timestamp.proto" ? timestampFile : undefined));
  return { all: registry.getMessage("enc.All") as DescMessage, intKeys: registry.getMessage("enc.IntKeys") as DescMessage };
}

function entryName(field: string): string {
  return `${field
    .split("_")
    .map((part) => part.charAt(0).toUpperCase() + part.slice(1))
    .join("")}Entry`;
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

  it("writes random messages of the every-kind type exactly as toBinary (3,000 messages, fixed seed)", () => {
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
