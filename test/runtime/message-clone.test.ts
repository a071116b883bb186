import { clone, create, type DescMessage, type Message } from "@bufbuild/protobuf";
import { StructSchema } from "@bufbuild/protobuf/wkt";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { describe, expect, it } from "vitest";
import { RunSchema } from "../../gen/worker_runtime/v1/run_pb.js";
import { cloneMessage, plannedCopy } from "../../src/runtime/message-clone.js";
import { allKindsSchema, genMessageTypes, randomMessage } from "../support/random-messages.js";
import { seededRandom } from "../support/seeded-random.js";

/**
 * cloneMessage must return exactly what protobuf-es's clone returns: equal
 * values (Buffer stays Buffer, -0 stays -0, zero values filled in), sharing
 * with the source only what clone shares ($unknown's entries), and for a
 * message clone refuses or converts, clone's own outcome. plannedCopy tells
 * the tests that the planned path, not the fallback, made the copy.
 */

/** Objects reachable from `root` (messages, arrays, maps, bytes, $unknown entries), by identity. */
function objectsOf(root: unknown, into = new Set<object>()): Set<object> {
  if (typeof root !== "object" || root === null || into.has(root)) return into;
  into.add(root);
  if (!(root instanceof Uint8Array)) for (const value of Object.values(root)) objectsOf(value, into);
  return into;
}

/** How many of the copy's objects are the source's own (clone shares only $unknown's entries and their bytes). */
function sharedWith(source: unknown, copy: unknown): number {
  const mine = objectsOf(source);
  return [...objectsOf(copy)].filter((object) => mine.has(object)).length;
}

/**
 * cloneMessage's outcome is clone's. Where clone copies, the planned path made
 * the copy (true is returned); where clone throws (the random strings hold
 * lone surrogates, which clone refuses), cloneMessage throws the same error.
 */
function expectSameAsClone(schema: DescMessage, message: Message): boolean {
  const expected = outcome(() => clone(schema, message));
  const actual = outcome(() => cloneMessage(schema, message));
  if (valueText(actual) !== valueText(expected)) expect(actual).toStrictEqual(expected);
  const copy = plannedCopy(schema, message);
  if (expected.error !== undefined) {
    expect(copy).toBeUndefined();
    return false;
  }
  if (copy === undefined) expect.fail(`${schema.typeName} was not copied by the planned path`);
  // Compared in full only when they differ: a readable failure without the cost on every message.
  if (valueText(copy) !== valueText(expected.copy)) expect(copy).toStrictEqual(expected.copy);
  expect(sharedWith(message, copy)).toBe(sharedWith(message, expected.copy));
  return true;
}

/**
 * A text that differs wherever toStrictEqual would see a difference in a
 * message (-0, NaN, bigint, Buffer or Uint8Array, an undefined property, a
 * hole), and also in the order of properties; much faster on large messages.
 */
function valueText(value: unknown): string {
  switch (typeof value) {
    case "number":
      return Object.is(value, -0) ? "-0" : String(value);
    case "bigint":
      return `${value}n`;
    case "string":
      return JSON.stringify(value);
    case "object": {
      if (value === null) return "null";
      if (value instanceof Uint8Array) return `${Buffer.isBuffer(value) ? "Buffer" : "Uint8Array"}<${Buffer.from(value).toString("hex")}>`;
      if (Array.isArray(value))
        return `[${Array.from({ length: value.length }, (_, i) => (i in value ? valueText(value[i]) : "hole")).join(",")}]`;
      const proto = Object.getPrototypeOf(value) === Object.prototype ? "" : "proto ";
      return `${proto}{${Object.entries(value)
        .map(([key, field]) => `${JSON.stringify(key)}:${valueText(field)}`)
        .join(",")}}`;
    }
    default:
      return String(value);
  }
}

/**
 * `message` with every string made well-formed (a lone surrogate becomes
 * U+FFFD): clone refuses lone surrogates, which the random strings often hold,
 * so without this few random messages would reach the planned path.
 */
function wellFormed<T>(message: T): T {
  const walk = (value: unknown): unknown => {
    if (typeof value === "string") return (value as unknown as { toWellFormed(): string }).toWellFormed();
    if (typeof value !== "object" || value === null || value instanceof Uint8Array) return value;
    const fields = value as Record<string, unknown>;
    for (const key of Object.keys(fields)) if (key !== "$typeName") fields[key] = walk(fields[key]);
    return value;
  };
  return walk(message) as T;
}

/** [first, <hole>, last]: an array with an empty slot. */
function holeBetween(first: unknown, last: unknown): unknown[] {
  const list = [first];
  list[2] = last;
  return list;
}

/** What clone does with `message`: its copy or its error message. */
function outcome(copy: () => unknown): { copy?: unknown; error?: string } {
  try {
    return { copy: copy() };
  } catch (error) {
    return { error: error instanceof Error ? error.message : String(error) };
  }
}

describe("cloneMessage against protobuf-es's clone", () => {
  const { all, intKeys } = allKindsSchema();

  it("copies random messages of the every-kind type exactly as clone (500 messages, fixed seed)", () => {
    const random = seededRandom(11);
    let planned = 0;
    for (let i = 0; i < 500; i++) {
      // One in five keeps its lone surrogates: clone's refusal must be cloneMessage's too.
      const message = randomMessage(all, random);
      if (expectSameAsClone(all, i % 5 === 0 ? message : wellFormed(message))) planned++;
    }
    expect(planned).toBeGreaterThan(350);
  });

  it("copies random messages of every message type in gen/ exactly as clone (30 per type, fixed seed)", async () => {
    const types = await genMessageTypes();
    expect(types.map((t) => t.typeName)).toContain("worker_runtime.v1.Worker");
    const random = seededRandom(43);
    let planned = 0;
    for (const desc of types) {
      expect(expectSameAsClone(desc, create(desc)), desc.typeName).toBe(true);
      for (let i = 0; i < 30; i++) if (expectSameAsClone(desc, wellFormed(randomMessage(desc, random)))) planned++;
    }
    expect(planned).toBe(types.length * 30);
  });

  it("keeps nothing of the source but what clone keeps: changing the copy leaves the source as it was", () => {
    const random = seededRandom(5);
    for (let i = 0; i < 100; i++) {
      const message = wellFormed(randomMessage(all, random)) as Message & { $unknown?: unknown[] };
      message.$unknown = [{ no: 9001, wireType: WireType.Varint, data: new BinaryWriter().uint64(5n).finish() }];
      const before = clone(all, message);
      const copy = plannedCopy(all, message) as Record<string, unknown>;
      expect(copy.$unknown).not.toBe(message.$unknown);
      expect(copy.$unknown).toEqual(message.$unknown);
      // Scribble over every array, bytes and map of the copy; the source must not change.
      for (const object of objectsOf(copy)) {
        if (object === copy.$unknown || (message.$unknown as object[]).includes(object)) continue;
        if (object instanceof Uint8Array) object.fill(7);
        else if (Array.isArray(object)) object.push(undefined);
        else (object as Record<string, unknown>).scribbled = true;
      }
      expect(message).toStrictEqual(before);
    }
  });

  it("copies as clone does: a Buffer's bytes as a Buffer, -0 as -0, unset fields at their zero values", () => {
    const sparse = { ...create(all), sBytes: Buffer.from("ab"), sDouble: -0 };
    const copy = plannedCopy(all, sparse as unknown as Message) as Record<string, unknown>;
    expect(copy).toStrictEqual(clone(all, sparse as unknown as Message));
    expect(Buffer.isBuffer(copy.sBytes)).toBe(true);
    expect(Object.is(copy.sDouble, -0)).toBe(true);
    expect(copy.sString).toBe("");
    expect(copy.rInt32).toEqual([]);
  });

  it("refuses or converts what clone refuses or converts, with clone's own outcome", () => {
    const cases: Array<[string, unknown]> = [
      ["sInt32", 2 ** 31],
      ["sInt32", 1.5],
      ["sInt32", "7"],
      ["sInt32", "0"],
      ["sUint32", -1],
      ["sFixed32", 2 ** 32],
      ["sSint32", Number.NaN],
      ["sFloat", 1e39],
      ["sFloat", Number.POSITIVE_INFINITY],
      ["sDouble", "2"],
      ["sString", 5],
      ["sString", undefined],
      ["sString", "a\ud800"],
      ["sBytes", "abc"],
      ["sBytes", [1, 2]],
      ["sBool", "yes"],
      ["sInt64", 2n ** 64n],
      ["sInt64", "12"],
      ["sInt64", 5],
      ["sUint64", -1n],
      ["bigStr", "007"],
      ["bigStr", 5n],
      ["bigStr", "99999999999999999999"],
      ["e", 2 ** 31],
      ["e", "1"],
      ["oInt32", null],
      ["oString", 3],
      ["child", { $typeName: "enc.Other" }],
      ["child", { ...create(all), $typeName: "enc.Wrong", sInt32: 1 }],
      ["child", create(intKeys)],
      ["child", null],
      ["children", [undefined]],
      // A hole: clone refuses it; a copy by map() would have skipped it.
      ["children", holeBetween(create(all), create(all))],
      ["children", "x"],
      ["rInt32", [1, 2 ** 40]],
      ["rString", [null]],
      ["mString", { a: undefined }],
      ["mString", { "\udc00": "x" }],
      ["mChild", { a: 1 }],
      ["mInt64", { a: "z" }],
      ["mString", null],
      ["choice", { case: "cInt64", value: undefined }],
      ["choice", { case: "cChild", value: undefined }],
      ["choice", { case: "nope", value: 1 }],
      ["choice", undefined],
    ];
    let planned = 0;
    for (const [name, value] of cases) {
      const message = create(all) as unknown as Record<string, unknown>;
      message[name] = value;
      const expected = outcome(() => clone(all, message as unknown as Message));
      expect(
        outcome(() => cloneMessage(all, message as unknown as Message)),
        `${name} = ${String(value)}`,
      ).toStrictEqual(expected);
      if (plannedCopy(all, message as unknown as Message) !== undefined) planned++;
    }
    // Infinity is a float, "0" in an int32 is its zero value: the only ones the plan copies itself.
    expect(planned).toBe(2);
    const wrongType = { ...create(all), $typeName: "enc.Wrong" } as unknown as Message;
    expect(outcome(() => cloneMessage(all, wrongType))).toStrictEqual(outcome(() => clone(all, wrongType)));
  });

  it("leaves types it does not plan (Struct, int-keyed maps) to clone", () => {
    const struct = create(StructSchema, { fields: { a: { kind: { case: "stringValue", value: "x" } } } });
    expect(plannedCopy(StructSchema, struct)).toBeUndefined();
    expect(cloneMessage(StructSchema, struct)).toStrictEqual(clone(StructSchema, struct));
    const keyed = create(intKeys, { m: { 1: "one" } } as never);
    expect(plannedCopy(intKeys, keyed)).toBeUndefined();
    expect(cloneMessage(intKeys, keyed)).toStrictEqual(clone(intKeys, keyed));
    const run = create(RunSchema, { runId: "r-1" });
    expect(plannedCopy(RunSchema, run)).toStrictEqual(clone(RunSchema, run));
  });
});
