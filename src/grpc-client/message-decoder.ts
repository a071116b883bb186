import {
  type BinaryReadOptions,
  type DescField,
  type DescMessage,
  fromBinary,
  type MessageShape,
  protoInt64,
  ScalarType,
} from "@bufbuild/protobuf";
import { scalarZeroValue } from "@bufbuild/protobuf/reflect";
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { isPlainMessageType } from "../runtime/plain-message-type.js";

/** Parses one message from its binary encoding. */
export type MessageDecoder<Desc extends DescMessage> = (bytes: Uint8Array) => MessageShape<Desc>;

/**
 * A decoder giving exactly what protobuf-es's `fromBinary(schema, bytes,
 * options)` gives (the same objects, property order, unknown fields,
 * merge of repeated singular fields, 64-bit representation, UTF-8 checks
 * and recursion limit), but planned once per message type instead of
 * walking the descriptor reflectively for every message: `fromBinary` was
 * about 15 % of a watcher's CPU in the issue-9 profile, most of it the
 * reflection (a wrapper object per message, a field lookup per tag).
 *
 * It reads with protobuf-es's own BinaryReader. Only proto3 message types
 * are planned, and only when every type they reach is plain: a type using
 * wrappers, Struct/Value/ListValue (which protobuf-es maps to other
 * shapes), groups, closed enums or default values is decoded by
 * `fromBinary` itself. A message that fails to decode is not trusted to
 * this decoder's error: callers that need protobuf-es's exact error run
 * `fromBinary` again (the fast transport does).
 */
export function createMessageDecoder<Desc extends DescMessage>(schema: Desc, options?: Partial<BinaryReadOptions>): MessageDecoder<Desc> {
  if (!isPlainMessageType(schema)) return (bytes) => fromBinary(schema, bytes, options);
  const plan = planFor(schema);
  const context: ReadContext = {
    readUnknownFields: options?.readUnknownFields ?? true,
    recursionLimit: options?.recursionLimit ?? 100,
    depth: 0,
    bytes: EMPTY,
  };
  return (bytes) => {
    context.depth = 0;
    context.bytes = bytes;
    const message = plan.zero();
    readMessage(plan, message, new BinaryReader(bytes), bytes.byteLength, context);
    return message as MessageShape<Desc>;
  };
}

const EMPTY = new Uint8Array(0);

/** A message under construction: its own properties, as protobuf-es writes them. */
type Fields = Record<string, unknown> & { $unknown?: UnknownField[] };
type UnknownField = { no: number; wireType: WireType; data: Uint8Array };
type OneofValue = { case: string | undefined; value?: unknown };

interface ReadContext {
  readUnknownFields: boolean;
  recursionLimit: number;
  depth: number;
  /** The bytes being read (the reader keeps its own reference private): for the tag check. */
  bytes: Uint8Array;
}

type FieldReader = (message: Fields, reader: BinaryReader, wireType: WireType, context: ReadContext) => void;

/** One message type, planned: its zero message and a reader per field number. */
interface Plan {
  readonly desc: DescMessage;
  zero: () => Fields;
  readonly fields: Map<number, FieldReader>;
}

/** Plans by message type, made once every type the message reaches is known to be plain. */
const plans = new WeakMap<DescMessage, Plan>();

// google.protobuf.FeatureSet.FieldPresence.IMPLICIT, as protobuf-es names it.
const IMPLICIT = 2;

/** The plan of a type whose closure is plain. */
function planFor(desc: DescMessage): Plan {
  const known = plans.get(desc);
  if (known !== undefined) return known;
  // Cached before its fields are planned, so a recursive type finds itself.
  const plan: Plan = { desc, zero: zeroFactory(desc), fields: new Map() };
  plans.set(desc, plan);
  for (const field of desc.fields) plan.fields.set(field.number, fieldReader(field));
  return plan;
}

/** The zero message of protobuf-es's `create(desc)` for a proto3 type: $typeName, then every oneof and implicit-presence field. */
function zeroFactory(desc: DescMessage): () => Fields {
  const members: Array<{ name: string; zero: () => unknown }> = [];
  for (const member of desc.members) {
    if (member.kind === "oneof") members.push({ name: member.localName, zero: () => ({ case: undefined }) });
    else if (member.presence === IMPLICIT) members.push({ name: member.localName, zero: zeroValue(member) });
  }
  const typeName = desc.typeName;
  return () => {
    const message: Fields = { $typeName: typeName };
    for (const member of members) message[member.name] = member.zero();
    return message;
  };
}

function zeroValue(field: DescField): () => unknown {
  switch (field.fieldKind) {
    case "list":
      return () => [];
    case "map":
      return () => ({});
    case "enum": {
      const value = field.enum.values[0]?.number;
      return () => value;
    }
    case "scalar": {
      if (field.scalar === ScalarType.BYTES) return () => new Uint8Array(0);
      const value = scalarZeroValue(field.scalar, field.longAsString);
      return () => value;
    }
    case "message":
      throw new Error("message fields have explicit presence in proto3");
  }
}

/** The reader of one field, as protobuf-es's readField handles its kind. */
function fieldReader(field: DescField): FieldReader {
  const name = field.localName;
  const oneof = field.oneof?.localName;
  switch (field.fieldKind) {
    case "scalar":
    case "enum": {
      const type = field.fieldKind === "enum" ? ScalarType.INT32 : field.scalar;
      const toLocal = longToLocal(
        field.fieldKind === "enum" ? undefined : field.scalar,
        field.fieldKind === "scalar" && field.longAsString,
      );
      const utf8 = field.utf8Validation;
      if (oneof !== undefined) {
        return (message, reader) => {
          message[oneof] = { case: name, value: toLocal(readScalar(reader, type, utf8)) };
        };
      }
      return (message, reader) => {
        message[name] = toLocal(readScalar(reader, type, utf8));
      };
    }
    case "message": {
      const sub = planFor(field.message);
      if (oneof !== undefined) {
        return (message, reader, _wireType, context) => {
          const current = message[oneof] as OneofValue;
          // A second occurrence of the same case merges into the first.
          const value = current.case === name ? (current.value as Fields) : sub.zero();
          readMessage(sub, value, reader, reader.uint32(), context);
          message[oneof] = { case: name, value };
        };
      }
      return (message, reader, _wireType, context) => {
        const value = (message[name] as Fields | undefined) ?? sub.zero();
        readMessage(sub, value, reader, reader.uint32(), context);
        message[name] = value;
      };
    }
    case "list":
      return listReader(field, name);
    case "map":
      return mapReader(field, name);
  }
}

function listReader(field: DescField & { fieldKind: "list" }, name: string): FieldReader {
  if (field.listKind === "message") {
    const sub = planFor(field.message);
    return (message, reader, _wireType, context) => {
      const value = sub.zero();
      readMessage(sub, value, reader, reader.uint32(), context);
      (message[name] as unknown[]).push(value);
    };
  }
  const type = field.scalar ?? ScalarType.INT32;
  const toLocal = longToLocal(field.scalar, field.listKind === "scalar" && field.longAsString);
  const utf8 = field.utf8Validation;
  const packable = type !== ScalarType.STRING && type !== ScalarType.BYTES;
  return (message, reader, wireType) => {
    const list = message[name] as unknown[];
    if (!packable || wireType !== WireType.LengthDelimited) {
      list.push(toLocal(readScalar(reader, type, utf8)));
      return;
    }
    const end = reader.uint32() + reader.pos;
    while (reader.pos < end) list.push(toLocal(readScalar(reader, type, utf8)));
  };
}

/** protobuf-es's readMapEntry: key 1 and value 2, anything else in the entry not skipped (as there). */
function mapReader(field: DescField & { fieldKind: "map" }, name: string): FieldReader {
  const sub = field.mapKind === "message" ? planFor(field.message) : undefined;
  const keyType = field.mapKey;
  const valueType = field.mapKind === "scalar" ? field.scalar : ScalarType.INT32;
  // A map's values are never JS_STRING longs in protobuf-es (jstype is not carried to them).
  const toLocal = longToLocal(field.mapKind === "scalar" ? field.scalar : undefined, false);
  const utf8 = field.utf8Validation;
  const enumZero = field.mapKind === "enum" ? field.enum.values[0]?.number : undefined;
  return (message, reader, _wireType, context) => {
    let key: unknown;
    let value: unknown;
    const end = reader.pos + reader.uint32();
    while (reader.pos < end) {
      const fieldNo = readTag(reader, context) >>> 3;
      if (fieldNo === 1) key = readScalar(reader, keyType, utf8);
      else if (fieldNo === 2) {
        if (sub !== undefined) {
          const entry = sub.zero();
          readMessage(sub, entry, reader, reader.uint32(), context);
          value = entry;
        } else value = readScalar(reader, valueType, utf8);
      }
    }
    if (key === undefined) key = scalarZeroValue(keyType, false);
    if (value === undefined) value = sub !== undefined ? sub.zero() : enumZero !== undefined ? enumZero : scalarZeroValue(valueType, false);
    const map = message[name] as Record<string, unknown>;
    map[typeof key === "string" || typeof key === "number" ? key : String(key)] = sub !== undefined ? value : toLocal(value);
  };
}

/** protobuf-es's readMessage: fields until `length` bytes are read, unknown ones kept in `$unknown`. */
function readMessage(plan: Plan, message: Fields, reader: BinaryReader, length: number, context: ReadContext): void {
  if (++context.depth > context.recursionLimit) {
    throw new Error(`cannot decode ${plan.desc} from binary: maximum recursion depth of ${context.recursionLimit} reached`);
  }
  const end = reader.pos + length;
  let unknown: UnknownField[] | undefined;
  while (reader.pos < end) {
    const tag = readTag(reader, context);
    const fieldNo = tag >>> 3;
    const wireType = (tag & 7) as WireType;
    const read = plan.fields.get(fieldNo);
    if (read !== undefined) {
      read(message, reader, wireType, context);
      continue;
    }
    const data = reader.skip(wireType, fieldNo, context.recursionLimit - context.depth);
    if (context.readUnknownFields) {
      unknown ??= message.$unknown ?? [];
      unknown.push({ no: fieldNo, wireType, data });
    }
  }
  if (unknown !== undefined) message.$unknown = unknown;
  context.depth--;
}

/** BinaryReader.tag() with its checks, as one number (no [fieldNo, wireType] array per field). */
function readTag(reader: BinaryReader, context: ReadContext): number {
  const start = reader.pos;
  const tag = reader.uint32();
  const bytesRead = reader.pos - start;
  if (bytesRead > 5 || (bytesRead === 5 && (context.bytes[reader.pos - 1] as number) > 0x0f)) {
    throw new Error("illegal tag: varint overflows uint32");
  }
  const fieldNo = tag >>> 3;
  const wireType = tag & 7;
  if (fieldNo <= 0 || wireType > 5) throw new Error(`illegal tag: field no ${fieldNo} wire type ${wireType}`);
  return tag;
}

function readScalar(reader: BinaryReader, type: ScalarType, utf8: boolean): unknown {
  switch (type) {
    case ScalarType.STRING:
      return reader.string(utf8);
    case ScalarType.BOOL:
      return reader.bool();
    case ScalarType.DOUBLE:
      return reader.double();
    case ScalarType.FLOAT:
      return reader.float();
    case ScalarType.INT32:
      return reader.int32();
    case ScalarType.INT64:
      return reader.int64();
    case ScalarType.UINT64:
      return reader.uint64();
    case ScalarType.FIXED64:
      return reader.fixed64();
    case ScalarType.BYTES:
      return reader.bytes();
    case ScalarType.FIXED32:
      return reader.fixed32();
    case ScalarType.SFIXED32:
      return reader.sfixed32();
    case ScalarType.SFIXED64:
      return reader.sfixed64();
    case ScalarType.SINT64:
      return reader.sint64();
    case ScalarType.UINT32:
      return reader.uint32();
    case ScalarType.SINT32:
      return reader.sint32();
  }
}

const identity = (value: unknown): unknown => value;

/** protobuf-es's longToLocal for one field: 64-bit values as its representation (bigint, or string with jstype=JS_STRING). */
function longToLocal(type: ScalarType | undefined, longAsString: boolean): (value: unknown) => unknown {
  switch (type) {
    case ScalarType.INT64:
    case ScalarType.SFIXED64:
    case ScalarType.SINT64:
      if (longAsString) return String;
      return (value) => (typeof value === "string" || typeof value === "number" ? protoInt64.parse(value) : value);
    case ScalarType.FIXED64:
    case ScalarType.UINT64:
      if (longAsString) return String;
      return (value) => (typeof value === "string" || typeof value === "number" ? protoInt64.uParse(value) : value);
    default:
      return identity;
  }
}
