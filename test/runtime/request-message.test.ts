import { create, type DescMessage, type Message } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { ListWorkersRequestSchema } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { RuntimeError } from "../../src/runtime/index.js";
import { isPlannedType } from "../../src/runtime/plain-message-type.js";
import { requestMessage } from "../../src/runtime/request-message.js";
import { allKindsSchema, genMessageTypes, randomMessage } from "../support/random-messages.js";
import { seededRandom } from "../support/seeded-random.js";

/**
 * requestMessage: what an embedded Runtime method makes of its argument. A
 * message passes as it is; a plain object (a message's init shape) is
 * checked field by field against the descriptor and then created.
 */

/** The init shape of a message: the same values, without `$typeName` at any depth. */
function plain(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(plain);
  if (value === null || typeof value !== "object" || value instanceof Uint8Array) return value;
  const out: Record<string, unknown> = {};
  for (const [key, field] of Object.entries(value)) if (key !== "$typeName" && key !== "$unknown") out[key] = plain(field);
  return out;
}

/** The error requestMessage throws for `init`, which must be an INVALID_ARGUMENT RuntimeError. */
function refusal(schema: DescMessage, init: unknown, maxValues = 1_000): RuntimeError {
  try {
    requestMessage(schema, init as never, maxValues);
  } catch (error) {
    if (error instanceof RuntimeError && error.code === Code.InvalidArgument) return error;
    throw new Error(`expected a RuntimeError INVALID_ARGUMENT, got ${String(error)}`);
  }
  throw new Error("expected a refusal");
}

const { all } = allKindsSchema();

describe("requestMessage", () => {
  it("hands a message of the type back as it is: the server's path costs one check, nothing is walked or copied", () => {
    const message = create(ListWorkersRequestSchema, { runtimeId: "rt" });
    expect(requestMessage(ListWorkersRequestSchema, message, 1_000)).toBe(message);
    // Even one an embedder broke after create(): a message is trusted as create() made it.
    (message as unknown as { pageSize: unknown }).pageSize = "ten";
    expect(requestMessage(ListWorkersRequestSchema, message, 1_000)).toBe(message);
  });

  it("creates from the init shape of any message of every request type, and of a type with every field kind, the same message", async () => {
    const requests = (await genMessageTypes()).filter((desc) => /^worker_runtime\.v1\.\w+Request$/.test(desc.typeName));
    expect(requests.length).toBeGreaterThan(15);
    const random = seededRandom(17);
    for (const desc of [all, ...requests]) {
      expect(isPlannedType(desc), desc.typeName).toBe(true);
      for (let i = 0; i < 40; i++) {
        const message = randomMessage(desc, random);
        const made = requestMessage(desc, plain(message) as never, 100_000) as Message;
        expect(made, desc.typeName).toEqual(message);
      }
    }
  });

  it("takes null as not set, as create() does", () => {
    const made = requestMessage(all, { sString: null, child: null, choice: null, rString: null, mString: null } as never, 1_000);
    expect(made).toEqual(create(all));
  });

  it("refuses a wrong JavaScript type in any field kind, naming the field by its proto name", () => {
    const cases: [string, Record<string, unknown>][] = [
      ["s_string", { sString: 1 }],
      ["s_bool", { sBool: "true" }],
      ["s_double", { sDouble: 1n }],
      ["s_float", { sFloat: 1e39 }],
      ["s_int32", { sInt32: 1.5 }],
      ["s_int32", { sInt32: 2 ** 31 }],
      ["s_uint32", { sUint32: -1 }],
      ["s_int64", { sInt64: 1 }],
      ["s_uint64", { sUint64: -1n }],
      ["s_sint64", { sSint64: 2n ** 63n }],
      ["big_str", { bigStr: 5n }],
      ["big_str", { bigStr: "007" }],
      ["ubig_str", { ubigStr: "-1" }],
      ["s_bytes", { sBytes: "AAE=" }],
      ["e", { e: "COLOR_RED" }],
      ["e", { e: 0.5 }],
      ["o_string", { oString: 2 }],
      ["r_string", { rString: "a" }],
      ["r_string[1]", { rString: ["a", undefined] }],
      ["r_bytes[0]", { rBytes: [[1, 2]] }],
      ["m_string", { mString: [] }],
      ['m_string["k"]', { mString: { k: 1 } }],
      ['m_child["k"].s_bool', { mChild: { k: { sBool: 1 } } }],
      ["child", { child: "x" }],
      ["child.child.s_string", { child: { child: { sString: false } } }],
      ["children[1].e", { children: [{}, { e: "x" }] }],
      ["ts.seconds", { ts: { seconds: 1 } }],
      ["choice", { choice: "c_string" }],
      ["choice", { choice: { case: "nope", value: 1 } }],
      ["c_string", { choice: { case: "cString", value: 1 } }],
      ["c_string", { choice: { case: "cString" } }],
      ["c_child.s_int32", { choice: { case: "cChild", value: { sInt32: "1" } } }],
      ["s_string", { s_string: "snake" }],
      ["c_string", { cString: "a oneof member set as a field" }],
      ['"not a name"', { "not a name": 1 }],
      ["unknown_thing", { unknown_thing: 1 }],
      ["request", { $typeName: "enc.Other" }],
    ];
    for (const [field, init] of cases) {
      const error = refusal(all, init);
      expect(
        { field: error.metadata.field, reason: error.reason },
        `${JSON.stringify(init, (_k, v) => String(v))}: ${error.message}`,
      ).toEqual({
        field,
        reason: ErrorReason.INVALID_ARGUMENT,
      });
    }
    expect(refusal(all, { s_string: "snake" }).message).toBe("s_string: is not a field of enc.All; it is spelled sString here");
    expect(refusal(all, { cString: "x" }).message).toBe(
      'c_string: is not a field of enc.All; set it as choice: { case: "cString", value }',
    );
    expect(refusal(all, { child: create(ListWorkersRequestSchema) }).message).toBe(
      "child: is a worker_runtime.v1.ListWorkersRequest message, not a enc.All",
    );
  });

  it("refuses what is no object, naming the request", () => {
    for (const init of [undefined, null, "x", 1, 1n, true, [], new Map(), new Date(0)]) {
      const error = refusal(all, init);
      expect(error.metadata.field).toBe("request");
      expect(error.message).toMatch(/^request: must be a enc\.All message or a plain object of its fields, not /);
    }
  });

  it("bounds the walk by the values a wire message could hold: a long list is refused before it is walked, a cycle ends", () => {
    const long = refusal(all, { rString: new Array(11).fill("") }, 10);
    expect({ reason: long.reason, field: long.metadata.field, limit: long.metadata.limit }).toEqual({
      reason: ErrorReason.LIMIT_EXCEEDED,
      field: "r_string",
      limit: "10",
    });
    const nested = refusal(all, { children: Array.from({ length: 4 }, () => ({ rInt32: [1, 2] })) }, 10);
    expect(nested.reason).toBe(ErrorReason.LIMIT_EXCEEDED);
    const cycle: Record<string, unknown> = {};
    cycle.child = cycle;
    expect(refusal(all, cycle, 1_000_000).metadata.field).toMatch(/^child(\.child)+$/);
  });
});
