import { clone, type DescField, type DescMessage, type MessageShape, ScalarType } from "@bufbuild/protobuf";
import { isPlannedType } from "./plain-message-type.js";
import { isFloat, isInt32, isUint32 } from "./scalar-ranges.js";
import { isWellFormed } from "./well-formed-strings.js";

/**
 * A deep copy equal to protobuf-es's `clone(schema, message)`, planned once
 * per message type instead of walked reflectively per copy: in issue 9's
 * profile of a run's core cost, `clone` (a ReflectMessage, a value check and
 * a conversion per field, two Maps per nested message) took a tenth of the
 * CPU, and the runtime copies every Run and Worker it hands out or keeps.
 *
 * It plans the types the planned encoder plans (plain-message-type.ts) and
 * follows `clone` exactly: a new message with `$typeName` and every implicit
 * field and oneof at its zero value, then each set field (protobuf-es's
 * `unsafeIsSet`) copied in declaration order: nested messages copied, bytes
 * by `slice()`, lists and string-keyed maps rebuilt, and `$unknown` copied as
 * a new array of the same entries. A value `clone` would check and refuse or
 * convert (a wrong `$typeName`, a number in an int64 field, an int32 out of
 * range, a lone surrogate, a float out of range, a non-canonical 64-bit
 * string) sends the whole message to `clone`, which copies it or throws its
 * own error: this never returns a different copy (test/runtime/message-clone.test.ts).
 */
export function cloneMessage<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>): MessageShape<Desc> {
  return plannedCopy(schema, message) ?? clone(schema, message);
}

/** The planned copy, or undefined where {@link cloneMessage} leaves the message to `clone` (exported for its tests). */
export function plannedCopy<Desc extends DescMessage>(schema: Desc, message: MessageShape<Desc>): MessageShape<Desc> | undefined {
  const plan = planOf(schema);
  if (plan === undefined) return undefined;
  try {
    return copyMessage(plan, message) as MessageShape<Desc>;
  } catch {
    // Not exactly what the plan knows: protobuf-es copies it, or throws its own error.
    return undefined;
  }
}

type Fields = Record<string, unknown>;

/** Copies one member of `from` into `to` (throws FALLBACK for what it does not copy exactly). */
type MemberCopy = (from: Fields, to: Fields) => void;

/** A value of one field: a scalar, an enum value or a message (also a list item or a map value). */
type ValueCopy = (value: unknown) => unknown;

interface Plan {
  readonly typeName: string;
  /** Implicit fields and oneofs, in member order: each is written, set or not (create's zero message). */
  always: MemberCopy[];
  /** Explicit-presence fields, in field order: written only when set. */
  whenSet: MemberCopy[];
}

/** Thrown for anything not copied exactly; the message goes to protobuf-es's clone. */
const FALLBACK = new Error("message clone: not planned, copy with clone");

const plans = new WeakMap<DescMessage, Plan | null>();
// google.protobuf.FeatureSet.FieldPresence.IMPLICIT, as protobuf-es names it.
const IMPLICIT = 2;

function planOf(desc: DescMessage): Plan | undefined {
  let plan = plans.get(desc);
  if (plan === undefined) {
    plan = isPlannedType(desc) ? planFor(desc) : null;
    plans.set(desc, plan);
  }
  return plan ?? undefined;
}

function planFor(desc: DescMessage): Plan {
  // Cached before its members are planned, so a recursive type finds itself.
  const plan: Plan = { typeName: desc.typeName, always: [], whenSet: [] };
  plans.set(desc, plan);
  for (const member of desc.members) {
    if (member.kind === "oneof") plan.always.push(oneofCopy(member.localName, member.fields));
    else if (member.presence === IMPLICIT) plan.always.push(implicitCopy(member));
  }
  for (const field of desc.fields) {
    if (field.oneof === undefined && field.presence !== IMPLICIT) plan.whenSet.push(explicitCopy(field));
  }
  return plan;
}

function copyMessage(plan: Plan, message: unknown): Fields {
  if (typeof message !== "object" || message === null || (message as Fields)["$typeName"] !== plan.typeName) throw FALLBACK;
  const from = message as Fields;
  const to: Fields = { $typeName: plan.typeName };
  for (const copy of plan.always) copy(from, to);
  for (const copy of plan.whenSet) copy(from, to);
  const unknown = from["$unknown"] as unknown[] | undefined;
  if (unknown && unknown.length > 0) to["$unknown"] = [...unknown];
  return to;
}

function oneofCopy(name: string, fields: readonly DescField[]): MemberCopy {
  const cases = new Map(fields.map((field) => [field.localName, valueCopy(field)]));
  return (from, to) => {
    const selected = from[name] as { case?: unknown; value?: unknown };
    const copy = cases.get(selected.case as string);
    if (copy !== undefined) to[name] = { case: selected.case, value: copy(selected.value) };
    else if (selected.case === undefined) to[name] = { case: undefined };
    else throw FALLBACK;
  };
}

/** A field without presence (a scalar or enum, a list, a map): its zero value when not set. */
function implicitCopy(field: DescField): MemberCopy {
  const name = field.localName;
  switch (field.fieldKind) {
    case "list": {
      const copy = valueCopy(field);
      return (from, to) => {
        const list = from[name];
        if (!Array.isArray(list)) throw FALLBACK;
        const out = new Array(list.length);
        // Indexed, not map(): a hole is a value clone refuses, and map() would skip it.
        for (let i = 0; i < list.length; i++) out[i] = copy(list[i]);
        to[name] = out;
      };
    }
    case "map": {
      const copy = valueCopy(field);
      return (from, to) => {
        const map = from[name];
        if (typeof map !== "object" || map === null || Array.isArray(map)) throw FALLBACK;
        const out: Fields = {};
        for (const key of Object.keys(map)) {
          if (!isWellFormed(key)) throw FALLBACK;
          out[key] = copy((map as Fields)[key]);
        }
        to[name] = out;
      };
    }
    case "message":
      throw new Error(`message clone: ${field.toString()} has implicit presence`);
    default: {
      const copy = valueCopy(field);
      const isZero = zeroTest(field);
      const zero = zeroValue(field);
      return (from, to) => {
        const value = from[name];
        to[name] = isZero(value) ? zero() : copy(value);
      };
    }
  }
}

/** A field with presence (a message, a proto3 `optional` scalar or enum): copied only when an own, defined property. */
function explicitCopy(field: DescField): MemberCopy {
  const name = field.localName;
  const copy = valueCopy(field);
  return (from, to) => {
    const value = from[name];
    if (value !== undefined && Object.hasOwn(from, name)) to[name] = copy(value);
  };
}

/** protobuf-es's isScalarZeroValue (and the enum's first value): what implicit presence treats as not set. */
function zeroTest(field: DescField & { fieldKind: "scalar" | "enum" }): (value: unknown) => boolean {
  if (field.fieldKind === "enum") {
    const first = field.enum.values[0]?.number;
    return (value) => value === first;
  }
  switch (field.scalar) {
    case ScalarType.BOOL:
      return (value) => value === false;
    case ScalarType.STRING:
      return (value) => value === "";
    case ScalarType.BYTES:
      return (value) => value instanceof Uint8Array && value.byteLength === 0;
    case ScalarType.DOUBLE:
    case ScalarType.FLOAT:
      return (value) => Object.is(value, 0);
    default:
      // Loose, as protobuf-es compares: 0n, 0 and "0" are all zero.
      // biome-ignore lint/suspicious/noDoubleEquals: protobuf-es's own rule, kept exactly
      return (value) => value == 0;
  }
}

/** The zero value `create` gives an implicit field (for bytes, a new empty array each time). */
function zeroValue(field: DescField & { fieldKind: "scalar" | "enum" }): () => unknown {
  if (field.fieldKind === "enum") {
    const first = field.enum.values[0]?.number;
    return () => first;
  }
  switch (field.scalar) {
    case ScalarType.BOOL:
      return () => false;
    case ScalarType.STRING:
      return () => "";
    case ScalarType.BYTES:
      return () => new Uint8Array(0);
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return field.longAsString ? () => "0" : () => 0n;
    default:
      return () => 0;
  }
}

/** A copy of one value of `field`'s type, checked as protobuf-es's reflect API checks it on set. */
function valueCopy(field: DescField): ValueCopy {
  if (field.message !== undefined) {
    const type = field.message;
    // Planned on first use: a recursive type is still being planned here.
    let plan: Plan | undefined;
    return (value) => {
      plan ??= planOf(type);
      if (plan === undefined) throw FALLBACK;
      return copyMessage(plan, value);
    };
  }
  // Plain types have open enums only: any int32 is a value.
  if (field.enum !== undefined) return checkInt32;
  return scalarCopy(field.scalar as ScalarType, "longAsString" in field && field.longAsString === true);
}

function scalarCopy(type: ScalarType, longAsString: boolean): ValueCopy {
  switch (type) {
    case ScalarType.STRING:
      return (value) => {
        if (typeof value !== "string" || !isWellFormed(value)) throw FALLBACK;
        return value;
      };
    case ScalarType.BYTES:
      return (value) => {
        if (!(value instanceof Uint8Array)) throw FALLBACK;
        return value.slice();
      };
    case ScalarType.BOOL:
      return checked((value) => typeof value === "boolean");
    case ScalarType.DOUBLE:
      return checked((value) => typeof value === "number");
    case ScalarType.FLOAT:
      return checked(isFloat);
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return checkInt32;
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return checked(isUint32);
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return int64Copy((value) => BigInt.asIntN(64, value) === value, longAsString);
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return int64Copy((value) => BigInt.asUintN(64, value) === value, longAsString);
  }
}

/** A 64-bit value as its field holds it: a bigint, or (jstype = JS_STRING) its canonical decimal string. */
function int64Copy(inRange: (value: bigint) => boolean, longAsString: boolean): ValueCopy {
  if (!longAsString)
    return (value) => {
      if (typeof value !== "bigint" || !inRange(value)) throw FALLBACK;
      return value;
    };
  return (value) => {
    if (typeof value !== "string") throw FALLBACK;
    // BigInt() throws on what is no integer; clone would rewrite a non-canonical one ("007" to "7").
    const parsed = BigInt(value);
    if (!inRange(parsed) || String(parsed) !== value) throw FALLBACK;
    return value;
  };
}

/** A copy that returns a value `valid` accepts as it is (a scalar is immutable), else falls back. */
function checked(valid: (value: unknown) => boolean): ValueCopy {
  return (value) => {
    if (!valid(value)) throw FALLBACK;
    return value;
  };
}

const checkInt32 = checked(isInt32);
