import { Code } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { RuntimeError } from "../../src/runtime/errors.js";
import { RESPONSE_RESERVE_BYTES } from "../../src/runtime/limits.js";
import { repeatedFieldBytes, splitByBytes } from "../../src/runtime/message-budget.js";

describe("splitByBytes", () => {
  it("cuts items into ordered parts within the budget, each with at least one item", () => {
    const sizes = [10, 10, 10, 50, 5, 5, 40];
    const parts = splitByBytes(sizes, (n) => n, 60);
    expect(parts.flat()).toEqual(sizes);
    for (const part of parts) {
      expect(part.length).toBeGreaterThan(0);
      expect(part.reduce((sum, n) => sum + repeatedFieldBytes(n), 0)).toBeLessThanOrEqual(60);
    }
    expect(parts).toEqual([
      [10, 10, 10],
      [50, 5],
      [5, 40],
    ]);
  });

  it("counts the tag and length of each element", () => {
    expect(repeatedFieldBytes(0)).toBe(2);
    expect(repeatedFieldBytes(127)).toBe(129);
    expect(repeatedFieldBytes(128)).toBe(131);
  });

  it("refuses an item that fits no response with LIMIT_EXCEEDED and the limit", () => {
    let error: unknown;
    try {
      splitByBytes([10, 100], (n) => n, 60);
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(RuntimeError);
    expect((error as RuntimeError).code).toBe(Code.ResourceExhausted);
    expect((error as RuntimeError).reason).toBe(ErrorReason.LIMIT_EXCEEDED);
    // The limit clients know: the budget plus the room kept for a response's own fields.
    expect((error as RuntimeError).metadata.limit).toBe(String(60 + RESPONSE_RESERVE_BYTES));
  });
});
