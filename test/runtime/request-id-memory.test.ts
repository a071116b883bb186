import { describe, expect, it } from "vitest";
import { RequestIdMemory } from "../../src/runtime/request-id-memory.js";

describe("the request-id memory", () => {
  it("forgets the oldest key past its capacity", () => {
    const memory = new RequestIdMemory<string>(2);
    memory.remember("a", "r1");
    memory.remember("b", "r2");
    memory.remember("c", "r3");
    expect([memory.get("a"), memory.get("b"), memory.get("c")]).toEqual([undefined, "r2", "r3"]);
    expect(memory.size).toBe(2);
  });

  it("makes a key remembered again the newest", () => {
    const memory = new RequestIdMemory<string>(2);
    memory.remember("a", "r1");
    memory.remember("b", "r2");
    memory.remember("a", "r3");
    memory.remember("c", "r4");
    expect([memory.get("a"), memory.get("b"), memory.get("c")]).toEqual(["r3", undefined, "r4"]);
    expect(memory.values()).toEqual(["r3", "r4"]);
  });

  it("forgets a key on request", () => {
    const memory = new RequestIdMemory<string>(4);
    memory.remember("a", "r1");
    memory.forget("a");
    expect(memory.get("a")).toBeUndefined();
    expect(memory.size).toBe(0);
  });
});
