import {
  create,
  type DescField,
  type DescMessage,
  type DescOneof,
  isMessage,
  type MessageInitShape,
  type MessageShape,
  ScalarType,
} from "@bufbuild/protobuf";
import { invalidArgument, limitExceeded } from "./errors.js";
import { isPlannedType } from "./plain-message-type.js";
import { isFloat, isInt32, isUint32 } from "./scalar-ranges.js";

/**
 * The request message a Runtime method works on, from what its caller
 * passed: the message itself, or a plain object of its fields (its init
 * shape), as connect's generated clients take. Why: an embedder wrote
 * `runtime.createWorker({ profile: ... })` as with a client and got a
 * TypeError from deep inside, since create() does not check init values and
 * the core reads a message's fields as their types promise.
 *
 * A message of the type passes as it is (the server's path: one check,
 * nothing walked or copied). A plain object is checked against the
 * descriptor, field by field and recursively, for the JavaScript types the
 * init shape promises, then created: a wrong type, a key that is no field,
 * or no object at all is INVALID_ARGUMENT naming the field by its proto name
 * (as every other check does); null and undefined are unset, as create()
 * takes them. Value rules (an unknown enum number, a lone surrogate, a
 * bound) stay with each field's own check, as on the wire. The walk is
 * bounded: more list items, map entries and messages than `maxValues` (the
 * Runtime passes `maxMessageBytes`: each costs a byte on the wire at least)
 * is LIMIT_EXCEEDED, and messages nest at most {@link MAX_DEPTH} deep, so a
 * cycle ends too. Types that are not planned (plain-message-type.ts; every
 * request type is) are left to create().
 */
export function requestMessage<Desc extends DescMessage>(
  schema: Desc,
  request: MessageInitShape<Desc>,
  maxValues: number,
): MessageShape<Desc> {
  if (isMessage(request, schema)) return request;
  if (isPlannedType(schema)) checkMessage(schema, request, { path: "request", depth: 0, budget: { left: maxValues, max: maxValues } });
  return create(schema, request);
}

/** Message nesting accepted in a plain request; protobuf's usual recursion limit. */
const MAX_DEPTH = 100;

/** Where the walk is: the field's name, how deep, and the values it may still visit. */
interface At {
  path: string;
  depth: number;
  budget: { left: number; max: number };
}

/** Each message type's keys in the init shape: its fields' and oneofs' local names. */
const initKeys = new WeakMap<DescMessage, Set<string>>();

function checkMessage(desc: DescMessage, value: unknown, at: At): void {
  if (isMessage(value)) {
    if (value.$typeName === desc.typeName) return;
    throw invalidArgument(at.path, `is a ${value.$typeName} message, not a ${desc.typeName}`);
  }
  if (!isPlainObject(value)) {
    const what = at.depth === 0 ? `a ${desc.typeName} message or a plain object of its fields` : "an object";
    throw invalidArgument(at.path, `must be ${what}, not ${describe(value)}`);
  }
  if (at.depth >= MAX_DEPTH) throw invalidArgument(at.path, `nests messages deeper than ${MAX_DEPTH}`);
  spend(at, 1);
  const prefix = at.depth === 0 ? "" : `${at.path}.`;
  checkKeys(desc, value, prefix);
  for (const member of desc.members) {
    const init = value[member.localName];
    if (init === undefined || init === null) continue;
    if (member.kind === "oneof") checkOneof(member, init, { ...at, path: `${prefix}${member.name}` }, prefix);
    else checkField(member, init, { ...at, path: `${prefix}${member.name}` });
  }
}

/** Every own key names a field (or oneof); a proto name gets the name to use here. */
function checkKeys(desc: DescMessage, value: Record<string, unknown>, prefix: string): void {
  let keys = initKeys.get(desc);
  if (keys === undefined) {
    keys = new Set(desc.members.map((member) => member.localName));
    initKeys.set(desc, keys);
  }
  for (const key of Object.keys(value)) {
    if (keys.has(key) || value[key] === undefined) continue;
    // A proto name, or a oneof member set as if it were a field: say how to set it.
    const named = desc.fields.find((field) => field.name === key || field.localName === key);
    let hint = "";
    if (named?.oneof) hint = `; set it as ${named.oneof.localName}: { case: "${named.localName}", value }`;
    else if (named) hint = `; it is spelled ${named.localName} here`;
    throw invalidArgument(`${prefix}${named ? named.name : keyName(key)}`, `is not a field of ${desc.typeName}${hint}`);
  }
}

function checkOneof(oneof: DescOneof, value: unknown, at: At, prefix: string): void {
  if (!isPlainObject(value)) throw invalidArgument(at.path, `must be an object { case, value }, not ${describe(value)}`);
  const selected = value.case;
  if (selected === undefined || selected === null) return;
  const field = oneof.fields.find((f) => f.localName === selected);
  if (field === undefined) {
    const cases = oneof.fields.map((f) => `"${f.localName}"`).join(", ");
    const got = typeof selected === "string" ? JSON.stringify(selected.slice(0, 64)) : describe(selected);
    throw invalidArgument(at.path, `case must be one of ${cases}, not ${got}`);
  }
  checkField(field, value.value, { ...at, path: `${prefix}${field.name}` });
}

function checkField(field: DescField, value: unknown, at: At): void {
  switch (field.fieldKind) {
    case "message":
      checkMessage(field.message, value, { ...at, depth: at.depth + 1 });
      return;
    case "list": {
      if (!Array.isArray(value)) throw invalidArgument(at.path, `must be an array, not ${describe(value)}`);
      spend(at, value.length);
      for (let i = 0; i < value.length; i++) {
        if (field.listKind === "message") checkMessage(field.message, value[i], { ...at, path: `${at.path}[${i}]`, depth: at.depth + 1 });
        else checkSingular(field, value[i], () => `${at.path}[${i}]`);
      }
      return;
    }
    case "map": {
      if (!isPlainObject(value)) throw invalidArgument(at.path, `must be a plain object, not ${describe(value)}`);
      const keys = Object.keys(value);
      spend(at, keys.length);
      for (const key of keys) {
        const path = `${at.path}[${JSON.stringify(key.slice(0, 70))}]`;
        if (field.mapKind === "message") checkMessage(field.message, value[key], { ...at, path, depth: at.depth + 1 });
        else checkSingular(field, value[key], () => path);
      }
      return;
    }
    default:
      checkSingular(field, value, () => at.path);
  }
}

/** A scalar or enum value of `field` (also a list item or map value); `path` names it when it is refused. */
function checkSingular(field: DescField, value: unknown, path: () => string): void {
  if (field.enum !== undefined) {
    // Open enums (plain types have only those): any int32 is a value; whether it is known is the field's own rule.
    if (!isInt32(value)) throw invalidArgument(path(), `must be a ${field.enum.name} number, not ${describe(value)}`);
    return;
  }
  const scalar = field.scalar as ScalarType;
  const longAsString = "longAsString" in field && field.longAsString === true;
  const expected = scalarExpectation(scalar, longAsString);
  if (!expected.valid(value)) throw invalidArgument(path(), `must be ${expected.what}, not ${describe(value)}`);
}

/** What a scalar field's init value must be, as protobuf-es's init shape types it. */
function scalarExpectation(scalar: ScalarType, longAsString: boolean): { what: string; valid: (value: unknown) => boolean } {
  switch (scalar) {
    case ScalarType.STRING:
      return { what: "a string", valid: (value) => typeof value === "string" };
    case ScalarType.BOOL:
      return { what: "a boolean", valid: (value) => typeof value === "boolean" };
    case ScalarType.BYTES:
      return { what: "a Uint8Array", valid: (value) => value instanceof Uint8Array };
    case ScalarType.DOUBLE:
      return { what: "a number", valid: (value) => typeof value === "number" };
    case ScalarType.FLOAT:
      return { what: "a number in float's range", valid: isFloat };
    case ScalarType.INT32:
    case ScalarType.SINT32:
    case ScalarType.SFIXED32:
      return { what: "an integer in int32's range", valid: isInt32 };
    case ScalarType.UINT32:
    case ScalarType.FIXED32:
      return { what: "an integer in uint32's range", valid: isUint32 };
    case ScalarType.INT64:
    case ScalarType.SINT64:
    case ScalarType.SFIXED64:
      return int64Expectation("int64", (value) => BigInt.asIntN(64, value) === value, longAsString);
    case ScalarType.UINT64:
    case ScalarType.FIXED64:
      return int64Expectation("uint64", (value) => BigInt.asUintN(64, value) === value, longAsString);
  }
}

/** A 64-bit value as its field holds it: a bigint, or (jstype = JS_STRING) its canonical decimal string. */
function int64Expectation(name: string, inRange: (value: bigint) => boolean, longAsString: boolean) {
  if (!longAsString) return { what: `a bigint in ${name}'s range`, valid: (value: unknown) => typeof value === "bigint" && inRange(value) };
  const canonical = /^-?(0|[1-9][0-9]*)$/;
  return {
    what: `a decimal string in ${name}'s range`,
    valid: (value: unknown) => typeof value === "string" && canonical.test(value) && value !== "-0" && inRange(BigInt(value)),
  };
}

/** Counts `count` values against the budget. */
function spend(at: At, count: number): void {
  at.budget.left -= count;
  if (at.budget.left < 0) {
    const { max } = at.budget;
    throw limitExceeded(
      at.path,
      max,
      `the request holds more than ${max} values (list items, map entries, messages); a message of max_message_bytes could not`,
    );
  }
}

/** An object whose own keys are its fields: not an array, a Map, a Date or any other class instance. */
function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== "object" || value === null) return false;
  const prototype = Object.getPrototypeOf(value);
  return prototype === Object.prototype || prototype === null;
}

/** A key as a field name: itself when it reads as one, else quoted and cut. */
function keyName(key: string): string {
  return /^[A-Za-z_$][\w$]{0,63}$/.test(key) ? key : JSON.stringify(key.slice(0, 64));
}

/** What a refused value is, in a few words (never the value itself, which may be large). */
function describe(value: unknown): string {
  if (value === null || value === undefined) return String(value);
  if (Array.isArray(value)) return "an array";
  if (isMessage(value)) return `a ${value.$typeName} message`;
  if (isPlainObject(value)) return "an object";
  if (typeof value === "object") return `a ${String(value.constructor?.name ?? "class instance")}`;
  return `a ${typeof value}`;
}
