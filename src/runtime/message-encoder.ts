import { type DescField, type DescMessage, type MessageShape, protoInt64, ScalarType, toBinary } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import { Buffer } from "node:buffer";
import { isPlannedType } from "./plain-message-type.js";
import { isFloat, isInt32, isUint32 } from "./scalar-ranges.js";

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

/** Thrown by the first pass for anything it does not handle exactly; the message goes to toBinary. */
const FALLBACK = new Error("message encoder: not planned, encode with toBinary");

/** One encoding: the sizes of the first pass (read back in the same order) and the output. */
interface Context {
  sizes: number[];
  index: number;
  out: Buffer<ArrayBuffer>;
  view: DataView | undefined;
  pos: number;
}

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

/** One scalar type: its wire type, the bytes of a value (checked, as protobuf-es's writer checks it) and its writer. */
interface ScalarCodec {
  wireType: WireType;
  size(value: unknown, context: Context): number;
  write(value: unknown, context: Context): void;
}

function scalarCodec(type: ScalarType): ScalarCodec {
  return CODECS[type];
}

function checkInt32(value: unknown): number {
  if (!isInt32(value)) throw FALLBACK;
  return value;
}

function checkUint32(value: unknown): number {
  if (!isUint32(value)) throw FALLBACK;
  return value;
}

function checkNumber(value: unknown): number {
  if (typeof value !== "number") throw FALLBACK;
  return value;
}

function viewOf(context: Context): DataView {
  context.view ??= new DataView(context.out.buffer, context.out.byteOffset, context.out.byteLength);
  return context.view;
}

/** A signed 32-bit varint: a negative value is sign-extended to ten bytes, as protobuf-es's varint32write does. */
const INT32: ScalarCodec = {
  wireType: WireType.Varint,
  size: (value) => {
    const n = checkInt32(value);
    return n < 0 ? 10 : varintSize(n);
  },
  write: (value, context) => {
    let n = value as number;
    if (n >= 0) {
      writeVarint(context, n);
      return;
    }
    const out = context.out;
    for (let i = 0; i < 9; i++) {
      out[context.pos++] = (n & 127) | 128;
      n >>= 7;
    }
    out[context.pos++] = 1;
  },
};

/** 64-bit integers: protobuf-es's protoInt64 split into two 32-bit halves (bigint, or string with jstype). */
function int64Codec(signed: boolean, zigzag: boolean, fixed: boolean): ScalarCodec {
  const encode = (value: unknown): { lo: number; hi: number } => {
    // Small non-negative bigints (seqs, token counts) without protoInt64's DataView round trip and its object.
    if (!zigzag && typeof value === "bigint" && value >= 0n && value <= 0x7fffffffn) return smallBits(Number(value));
    if (typeof value !== "bigint" && typeof value !== "string" && typeof value !== "number") throw FALLBACK;
    const bits = signed ? protoInt64.enc(value) : protoInt64.uEnc(value);
    if (!zigzag) return bits;
    const sign = bits.hi >> 31;
    return { lo: (bits.lo << 1) ^ sign, hi: ((bits.hi << 1) | (bits.lo >>> 31)) ^ sign };
  };
  return {
    wireType: fixed ? WireType.Bit64 : WireType.Varint,
    size: (value, context) => {
      const { lo, hi } = encode(value);
      context.sizes.push(lo, hi);
      return fixed ? 8 : varint64Size(lo, hi);
    },
    write: (_value, context) => {
      const lo = context.sizes[context.index++] as number;
      const hi = context.sizes[context.index++] as number;
      if (!fixed) {
        writeVarint64(context, lo, hi);
        return;
      }
      const view = viewOf(context);
      view.setInt32(context.pos, lo, true);
      view.setInt32(context.pos + 4, hi, true);
      context.pos += 8;
    },
  };
}

/** One shared result for small values: read at once by the caller, never kept. */
const SMALL = { lo: 0, hi: 0 };
function smallBits(value: number): { lo: number; hi: number } {
  SMALL.lo = value;
  return SMALL;
}

const CODECS: Record<ScalarType, ScalarCodec> = {
  [ScalarType.STRING]: {
    wireType: WireType.LengthDelimited,
    size: (value, context) => {
      if (typeof value !== "string") throw FALLBACK;
      const bytes = utf8Length(value);
      context.sizes.push(bytes);
      return varintSize(bytes) + bytes;
    },
    write: (value, context) => {
      const bytes = context.sizes[context.index++] as number;
      writeVarint(context, bytes);
      writeUtf8(context, value as string, bytes);
    },
  },
  [ScalarType.BYTES]: {
    wireType: WireType.LengthDelimited,
    size: (value) => {
      if (!(value instanceof Uint8Array)) throw FALLBACK;
      return varintSize(value.byteLength) + value.byteLength;
    },
    write: (value, context) => {
      const bytes = value as Uint8Array;
      writeVarint(context, bytes.byteLength);
      context.out.set(bytes, context.pos);
      context.pos += bytes.byteLength;
    },
  },
  [ScalarType.BOOL]: {
    wireType: WireType.Varint,
    size: (value) => {
      if (typeof value !== "boolean") throw FALLBACK;
      return 1;
    },
    write: (value, context) => {
      context.out[context.pos++] = value ? 1 : 0;
    },
  },
  [ScalarType.DOUBLE]: {
    wireType: WireType.Bit64,
    size: (value) => {
      checkNumber(value);
      return 8;
    },
    write: (value, context) => {
      viewOf(context).setFloat64(context.pos, value as number, true);
      context.pos += 8;
    },
  },
  [ScalarType.FLOAT]: {
    wireType: WireType.Bit32,
    size: (value) => {
      const n = checkNumber(value);
      if (!isFloat(n)) throw FALLBACK;
      return 4;
    },
    write: (value, context) => {
      viewOf(context).setFloat32(context.pos, value as number, true);
      context.pos += 4;
    },
  },
  [ScalarType.INT32]: INT32,
  [ScalarType.UINT32]: {
    wireType: WireType.Varint,
    size: (value) => varintSize(checkUint32(value)),
    write: (value, context) => writeVarint(context, value as number),
  },
  [ScalarType.SINT32]: {
    wireType: WireType.Varint,
    size: (value) => {
      const n = checkInt32(value);
      return varintSize(((n << 1) ^ (n >> 31)) >>> 0);
    },
    write: (value, context) => {
      const n = value as number;
      writeVarint(context, ((n << 1) ^ (n >> 31)) >>> 0);
    },
  },
  [ScalarType.FIXED32]: {
    wireType: WireType.Bit32,
    size: (value) => {
      checkUint32(value);
      return 4;
    },
    write: (value, context) => {
      viewOf(context).setUint32(context.pos, value as number, true);
      context.pos += 4;
    },
  },
  [ScalarType.SFIXED32]: {
    wireType: WireType.Bit32,
    size: (value) => {
      checkInt32(value);
      return 4;
    },
    write: (value, context) => {
      viewOf(context).setInt32(context.pos, value as number, true);
      context.pos += 4;
    },
  },
  [ScalarType.INT64]: int64Codec(true, false, false),
  [ScalarType.UINT64]: int64Codec(false, false, false),
  [ScalarType.SINT64]: int64Codec(true, true, false),
  [ScalarType.FIXED64]: int64Codec(false, false, true),
  [ScalarType.SFIXED64]: int64Codec(true, false, true),
};

function tagOf(fieldNo: number, wireType: WireType): number {
  return ((fieldNo << 3) | wireType) >>> 0;
}

/** Bytes of an unsigned varint below 2^32. */
function varintSize(value: number): number {
  let size = 1;
  for (let n = value; n >= 0x80; n >>>= 7) size++;
  return size;
}

function writeVarint(context: Context, value: number): void {
  const out = context.out;
  let n = value;
  while (n >= 0x80) {
    out[context.pos++] = (n & 0x7f) | 0x80;
    n >>>= 7;
  }
  out[context.pos++] = n;
}

/** Bytes of protobuf-es's varint64write(lo, hi). */
function varint64Size(lo: number, hi: number): number {
  if (hi === 0) return varintSize(lo >>> 0);
  const high = hi >>> 0;
  // 28 low bits in 4 bytes, then 7 bits per byte from bit 28 on.
  let size = 5;
  for (let n = high >>> 3; n > 0; n >>>= 7) size++;
  return size;
}

/** protobuf-es's varint64write, into the output. */
function writeVarint64(context: Context, lo: number, hi: number): void {
  const out = context.out;
  for (let i = 0; i < 28; i += 7) {
    const shift = lo >>> i;
    const hasNext = !(shift >>> 7 === 0 && hi === 0);
    out[context.pos++] = (hasNext ? shift | 0x80 : shift) & 0xff;
    if (!hasNext) return;
  }
  const splitBits = ((lo >>> 28) & 0x0f) | ((hi & 0x07) << 4);
  const hasMoreBits = !(hi >> 3 === 0);
  out[context.pos++] = (hasMoreBits ? splitBits | 0x80 : splitBits) & 0xff;
  if (!hasMoreBits) return;
  for (let i = 3; i < 31; i += 7) {
    const shift = hi >>> i;
    const hasNext = !(shift >>> 7 === 0);
    out[context.pos++] = (hasNext ? shift | 0x80 : shift) & 0xff;
    if (!hasNext) return;
  }
  out[context.pos++] = (hi >>> 31) & 0x01;
}

/** UTF-8 bytes of a string as TextEncoder writes it (a lone surrogate becomes U+FFFD, 3 bytes). */
function utf8Length(value: string): number {
  if (value.length > 64) return Buffer.byteLength(value, "utf8");
  let bytes = value.length;
  for (let i = 0; i < value.length; i++) {
    const code = value.charCodeAt(i);
    if (code < 0x80) continue;
    if (code < 0x800) bytes += 1;
    else if (code >= 0xd800 && code <= 0xdbff && i + 1 < value.length) {
      const next = value.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        // A pair: 4 bytes for 2 code units.
        bytes += 2;
        i++;
      } else bytes += 2;
    } else bytes += 2;
  }
  return bytes;
}

function writeUtf8(context: Context, value: string, bytes: number): void {
  const out = context.out;
  if (bytes === value.length && bytes <= 64) {
    // ASCII: one byte per code unit.
    for (let i = 0; i < bytes; i++) out[context.pos + i] = value.charCodeAt(i);
  } else out.write(value, context.pos, bytes, "utf8");
  context.pos += bytes;
}
