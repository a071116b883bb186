import { create, createFileRegistry, type DescField, type DescFile, type DescMessage, type Message, ScalarType } from "@bufbuild/protobuf";
import {
  FieldDescriptorProto_Label,
  FieldDescriptorProto_Type,
  FieldOptions_JSType,
  FileDescriptorProtoSchema,
  file_google_protobuf_timestamp as timestampFile,
  type FieldDescriptorProto,
} from "@bufbuild/protobuf/wkt";
import { readdirSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

/**
 * Random protobuf-es messages for the planned codec tests (the encoder's and
 * clone's): values of every scalar kind with their edge values, every message
 * type in gen/, and a test type with every field kind.
 */
export type Random = () => number;
export const pick = <T>(random: Random, values: readonly T[]): T => values[Math.floor(random() * values.length)] as T;

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

export function scalarValue(random: Random, type: ScalarType, longAsString: boolean): unknown {
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

export function enumValue(random: Random, field: DescField): number {
  const values = field.enum?.values.map((v) => v.number) ?? [0];
  return random() < 0.8 ? pick(random, values) : pick(random, [7777, -1, 2 ** 31 - 1, -(2 ** 31)]);
}

const MAP_KEYS = ["", "a", "1", "é", "😀", "long".repeat(30), "2", "b"];

/** A message of `desc` with random fields set (each kind, each oneof case or none), nested up to depth 3 and 12 messages. */
export function randomMessage(desc: DescMessage, random: Random, depth = 0, budget = { left: 12 }): Message {
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
export async function genMessageTypes(): Promise<DescMessage[]> {
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

export function allKindsSchema(): { all: DescMessage; intKeys: DescMessage } {
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
