import { protoInt64, ScalarType } from "@bufbuild/protobuf";
import { WireType } from "@bufbuild/protobuf/wire";
import { Buffer } from "node:buffer";
import { isFloat, isInt32, isUint32 } from "./scalar-ranges.js";

/**
 * The protobuf wire encodings of scalar values, tags and varints, as the
 * planned encoder (message-encoder.ts) sizes and writes them: each checks a
 * value as protobuf-es's BinaryWriter would and writes exactly its bytes.
 * Split from the encoder so that file holds the per-type plan only.
 */

/** Thrown by a first (sizing) pass for anything it does not handle exactly; the message then goes to toBinary. */
export const FALLBACK = new Error("message encoder: not planned, encode with toBinary");

/** One encoding: the sizes of the first pass (read back in the same order) and the output. */
export interface EncodeContext {
  sizes: number[];
  index: number;
  out: Buffer<ArrayBuffer>;
  view: DataView | undefined;
  pos: number;
}

/** One scalar type: its wire type, the bytes of a value (checked, as protobuf-es's writer checks it) and its writer. */
export interface ScalarCodec {
  wireType: WireType;
  size(value: unknown, context: EncodeContext): number;
  write(value: unknown, context: EncodeContext): void;
}

/** The codec of one scalar type (enums are INT32). */
export function scalarCodec(type: ScalarType): ScalarCodec {
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

function viewOf(context: EncodeContext): DataView {
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

/** A field's tag: its number and wire type. */
export function tagOf(fieldNo: number, wireType: WireType): number {
  return ((fieldNo << 3) | wireType) >>> 0;
}

/** Bytes of an unsigned varint below 2^32. */
export function varintSize(value: number): number {
  let size = 1;
  for (let n = value; n >= 0x80; n >>>= 7) size++;
  return size;
}

/** Writes an unsigned varint below 2^32 at the context's position. */
export function writeVarint(context: EncodeContext, value: number): void {
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
function writeVarint64(context: EncodeContext, lo: number, hi: number): void {
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

function writeUtf8(context: EncodeContext, value: string, bytes: number): void {
  const out = context.out;
  if (bytes === value.length && bytes <= 64) {
    // ASCII: one byte per code unit.
    for (let i = 0; i < bytes; i++) out[context.pos + i] = value.charCodeAt(i);
  } else out.write(value, context.pos, bytes, "utf8");
  context.pos += bytes;
}
