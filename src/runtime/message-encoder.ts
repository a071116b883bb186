import { type DescField, type DescMessage, type MessageShape, ScalarType, toBinary } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import { Buffer } from "node:buffer";
import { isPlannedType } from "./plain-message-type.js";
import { type EncodeContext as Context, FALLBACK, scalarCodec, tagOf, varintSize, writeVarint } from "./scalar-codecs.js";

/** Encodes one message to its binary form, byte-identical to protobuf-es's `toBinary`. */
export type MessageEncoder<Desc extends DescMessage> = (message: MessageShape<Desc>) => Uint8Array<ArrayBuffer>;

/**
 * An encoder giving exactly the bytes of protobuf-es's `toBinary(schema,
 * message)`, planned once per message type instead of walking the
 * descriptor reflectively per message: in issue 9's allocation profile
 * `toBinary` made about a sixth of every byte the runtime allocates (a
 * ReflectMessage with two Maps per nested message, a BinaryWriter that forks,
 * joins and copies, a TextEncoder call per string: ~11 KB of garbage for a
 * small Run). This is the mirror of the client's decoder and plans the same
 * types (plain-message-type.ts), plus string-keyed maps only.
 *
 * Two passes: the first checks every value and sizes every nested message,
 * string, packed list and map entry (kept in one array, in order), the second
 * writes into one buffer of the exact size. Fields go by number; a field is
 * written when protobuf-es's `unsafeIsSet` says it is set (implicit presence:
 * not the zero value, -0 and NaN included; explicit: an own, defined
 * property; oneofs: the selected case). Anything the first pass does not
 * recognise exactly (a wrong `$typeName`, `$unknown` fields at any level, a
 * value of the wrong type or out of range, a oneof case without a value)
 * sends the whole message to `toBinary`, which encodes it or throws its own
 * error: this never writes different bytes (test/runtime/message-encoder.test.ts).
 */
export function createMessageEncoder<Desc extends DescMessage>(schema: Desc): MessageEncoder<Desc> {
  let encoder = encoders.get(schema);
  if (encoder === undefined) {
    encoder = plannedEncoder(schema);
    encoders.set(schema, encoder);
  }
  return encoder as MessageEncoder<Desc>;
}

/** The encoder of {@link createMessageEncoder}, made once per type and kept: {@link encodeMessage} looks one up on every encode. */
function plannedEncoder(schema: DescMessage): MessageEncoder<DescMessage> {
  if (!isPlannedType(schema)) return (message) => toBinary(schema, message);
  const plan = planFor(schema);
  return (message) => {
    const context: Context = { sizes: [], index: 0, out: EMPTY, view: undefined, pos: 0 };
    let size: number;
    try {
      size = sizeMessage(plan, message, context);
    } catch {
      return toBinary(schema, message);
    }
    // A buffer of its own, not a slice of Node's pool: callers keep these bytes (stores, sealed payloads).
    context.out = Buffer.allocUnsafeSlow(size);
    writeMessage(plan, message, context);
    if (context.pos !== size) throw new Error(`message encoder: wrote ${context.pos} of ${size} bytes of ${schema.typeName}`);
    return context.out;
  };
}

/** `toBinary(schema, message)` through the planned encoder of `schema`: for callers holding a schema rather than an encoder. */
export function encodeMessage<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>): Uint8Array {
  return createMessageEncoder(schema)(message);
}

const encoders = new WeakMap<DescMessage, MessageEncoder<DescMessage>>();
const EMPTY: Buffer<ArrayBuffer> = Buffer.alloc(0);

type Fields = Record<string, unknown>;

/** One or more fields at one place in number order: a field, or consecutive members of one oneof. */
interface Slot {
  /** Bytes of this slot in `message` (0 when not set); checks values and records sizes. */
  size(message: Fields, context: Context): number;
  write(message: Fields, context: Context): void;
}

interface Plan {
  readonly typeName: string;
  slots: Slot[];
}

const plans = new WeakMap<DescMessage, Plan>();
// google.protobuf.FeatureSet.FieldPresence.IMPLICIT, as protobuf-es names it.
const IMPLICIT = 2;

function planFor(desc: DescMessage): Plan {
  const known = plans.get(desc);
  if (known !== undefined) return known;
  // Cached before its fields are planned, so a recursive type finds itself.
  const plan: Plan = { typeName: desc.typeName, slots: [] };
  plans.set(desc, plan);
  const sorted = desc.fields.concat().sort((a, b) => a.number - b.number);
  for (let i = 0; i < sorted.length; ) {
    const field = sorted[i] as DescField;
    const oneof = field.oneof;
    if (oneof === undefined) {
      plan.slots.push(fieldSlot(field));
      i++;
      continue;
    }
    // Consecutive members of one oneof share a slot, found by the selected case.
    const members = new Map<string, Slot>();
    while (i < sorted.length && sorted[i]?.oneof === oneof) {
      // Oneof members are singular: scalars, enums or messages.
      const member = sorted[i] as DescField & { fieldKind: "scalar" | "enum" | "message" };
      members.set(
        member.localName,
        valueSlot(member, (message) => oneofValue(message, oneof.localName, member.localName)),
      );
      i++;
    }
    plan.slots.push(oneofSlot(oneof.localName, members));
  }
  return plan;
}

function sizeMessage(plan: Plan, message: unknown, context: Context): number {
  if (typeof message !== "object" || message === null) throw FALLBACK;
  const fields = message as Fields;
  if (fields.$typeName !== plan.typeName || fields.$unknown !== undefined) throw FALLBACK;
  let size = 0;
  for (const slot of plan.slots) size += slot.size(fields, context);
  return size;
}

function writeMessage(plan: Plan, message: unknown, context: Context): void {
  for (const slot of plan.slots) slot.write(message as Fields, context);
}

/** A nested message: its length recorded before its own sizes, as the write pass meets them. */
function sizeNested(plan: Plan, message: unknown, context: Context): number {
  const at = context.sizes.length;
  context.sizes.push(0);
  const size = sizeMessage(plan, message, context);
  context.sizes[at] = size;
  return varintSize(size) + size;
}

function writeNested(plan: Plan, message: unknown, context: Context): void {
  writeVarint(context, context.sizes[context.index++] as number);
  writeMessage(plan, message, context);
}

function oneofValue(message: Fields, oneof: string, name: string): unknown {
  const selected = message[oneof] as { case: unknown; value?: unknown };
  // A selected case without a value is encoded by toBinary as the zero value or an empty message.
  if (selected.case !== name) return NOT_SET;
  if (selected.value === undefined) throw FALLBACK;
  return selected.value;
}

const NOT_SET = Symbol("not set");

function oneofSlot(oneof: string, members: Map<string, Slot>): Slot {
  const memberOf = (message: Fields): Slot | undefined => {
    const selected = message[oneof] as { case: unknown };
    return typeof selected.case === "string" ? members.get(selected.case) : undefined;
  };
  return {
    size: (message, context) => memberOf(message)?.size(message, context) ?? 0,
    write: (message, context) => memberOf(message)?.write(message, context),
  };
}

/** A field outside a oneof, with protobuf-es's presence rule for its kind. */
function fieldSlot(field: DescField): Slot {
  const name = field.localName;
  switch (field.fieldKind) {
    case "list":
      return listSlot(field, name);
    case "map":
      return mapSlot(field, name);
    case "message":
    case "scalar":
    case "enum":
      if (field.fieldKind === "message" || field.presence !== IMPLICIT) {
        return valueSlot(field, (message) => {
          const value = message[name];
          return value !== undefined && Object.hasOwn(message, name) ? value : NOT_SET;
        });
      }
      return valueSlot(field, (message) => {
        const value = message[name];
        return isZero(field, value) ? NOT_SET : value;
      });
  }
}

/** protobuf-es's isScalarZeroValue (and the enum's first value): what implicit presence leaves out. */
function isZero(field: DescField & { fieldKind: "scalar" | "enum" }, value: unknown): boolean {
  if (field.fieldKind === "enum") return value === field.enum.values[0]?.number;
  switch (field.scalar) {
    case ScalarType.BOOL:
      return value === false;
    case ScalarType.STRING:
      return value === "";
    case ScalarType.BYTES:
      return value instanceof Uint8Array && value.byteLength === 0;
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return Object.is(value, 0);
    default:
      // Loose, as protobuf-es compares: 0n, 0 and "0" are all zero.
      // biome-ignore lint/suspicious/noDoubleEquals: protobuf-es's own rule, kept exactly
      return value == 0;
  }
}

/** A singular field (scalar, enum or message) whose value `get` returns, or NOT_SET. */
function valueSlot(field: DescField & { fieldKind: "scalar" | "enum" | "message" }, get: (message: Fields) => unknown): Slot {
  if (field.fieldKind === "message") {
    const sub = planFor(field.message);
    const tag = tagOf(field.number, WireType.LengthDelimited);
    const tagBytes = varintSize(tag);
    return {
      size(message, context) {
        const value = get(message);
        return value === NOT_SET ? 0 : tagBytes + sizeNested(sub, value, context);
      },
      write(message, context) {
        const value = get(message);
        if (value === NOT_SET) return;
        writeVarint(context, tag);
        writeNested(sub, value, context);
      },
    };
  }
  const codec = scalarCodec(field.fieldKind === "enum" ? ScalarType.INT32 : field.scalar);
  const tag = tagOf(field.number, codec.wireType);
  const tagBytes = varintSize(tag);
  return {
    size(message, context) {
      const value = get(message);
      return value === NOT_SET ? 0 : tagBytes + codec.size(value, context);
    },
    write(message, context) {
      const value = get(message);
      if (value === NOT_SET) return;
      writeVarint(context, tag);
      codec.write(value, context);
    },
  };
}

function listSlot(field: DescField & { fieldKind: "list" }, name: string): Slot {
  const items = (message: Fields): unknown[] | undefined => {
    const list = message[name];
    if (!Array.isArray(list)) throw FALLBACK;
    return list.length > 0 ? list : undefined;
  };
  if (field.listKind === "message") {
    const sub = planFor(field.message);
    const tag = tagOf(field.number, WireType.LengthDelimited);
    const tagBytes = varintSize(tag);
    return {
      size(message, context) {
        let size = 0;
        for (const item of items(message) ?? []) size += tagBytes + sizeNested(sub, item, context);
        return size;
      },
      write(message, context) {
        for (const item of items(message) ?? []) {
          writeVarint(context, tag);
          writeNested(sub, item, context);
        }
      },
    };
  }
  const codec = scalarCodec(field.scalar ?? ScalarType.INT32);
  if (field.packed) {
    const tag = tagOf(field.number, WireType.LengthDelimited);
    const tagBytes = varintSize(tag);
    return {
      size(message, context) {
        const list = items(message);
        if (list === undefined) return 0;
        const at = context.sizes.length;
        context.sizes.push(0);
        let size = 0;
        for (const item of list) size += codec.size(item, context);
        context.sizes[at] = size;
        return tagBytes + varintSize(size) + size;
      },
      write(message, context) {
        const list = items(message);
        if (list === undefined) return;
        writeVarint(context, tag);
        writeVarint(context, context.sizes[context.index++] as number);
        for (const item of list) codec.write(item, context);
      },
    };
  }
  const tag = tagOf(field.number, codec.wireType);
  const tagBytes = varintSize(tag);
  return {
    size(message, context) {
      let size = 0;
      for (const item of items(message) ?? []) size += tagBytes + codec.size(item, context);
      return size;
    },
    write(message, context) {
      for (const item of items(message) ?? []) {
        writeVarint(context, tag);
        codec.write(item, context);
      }
    },
  };
}

/** protobuf-es writes every entry of a string-keyed map, key (1) and value (2) always, in Object.entries order. */
function mapSlot(field: DescField & { fieldKind: "map" }, name: string): Slot {
  const tag = tagOf(field.number, WireType.LengthDelimited);
  const tagBytes = varintSize(tag);
  const keyCodec = scalarCodec(ScalarType.STRING);
  const KEY_TAG = tagOf(1, WireType.LengthDelimited);
  const sub = field.mapKind === "message" ? planFor(field.message) : undefined;
  const valueCodec = scalarCodec(field.mapKind === "scalar" ? field.scalar : ScalarType.INT32);
  const VALUE_TAG = tagOf(2, sub !== undefined ? WireType.LengthDelimited : valueCodec.wireType);
  const entries = (message: Fields): Array<[string, unknown]> | undefined => {
    const map = message[name];
    if (typeof map !== "object" || map === null) throw FALLBACK;
    const all = Object.entries(map);
    return all.length > 0 ? all : undefined;
  };
  return {
    size(message, context) {
      let size = 0;
      for (const [key, value] of entries(message) ?? []) {
        const at = context.sizes.length;
        context.sizes.push(0);
        const entry =
          1 + keyCodec.size(key, context) + 1 + (sub !== undefined ? sizeNested(sub, value, context) : valueCodec.size(value, context));
        context.sizes[at] = entry;
        size += tagBytes + varintSize(entry) + entry;
      }
      return size;
    },
    write(message, context) {
      for (const [key, value] of entries(message) ?? []) {
        writeVarint(context, tag);
        writeVarint(context, context.sizes[context.index++] as number);
        context.out[context.pos++] = KEY_TAG;
        keyCodec.write(key, context);
        context.out[context.pos++] = VALUE_TAG;
        if (sub !== undefined) writeNested(sub, value, context);
        else valueCodec.write(value, context);
      }
    },
  };
}
