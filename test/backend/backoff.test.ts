import { describe, expect, it } from "vitest";
import { ConnectionBackoff } from "../../src/backend/index.js";
import { sleepUnlessAborted } from "../../src/backend/backoff.js";

describe("ConnectionBackoff", () => {
  it("follows gRPC's connection backoff: 1 s, ×1.6, capped at 120 s, reset by a success", () => {
    const backoff = new ConnectionBackoff({ random: () => 0.5 });
    const delays = Array.from({ length: 14 }, () => backoff.next());
    expect(delays.slice(0, 4)).toEqual([1_000, 1_600, 2_560, 4_096]);
    expect(Math.max(...delays)).toBe(120_000);
    expect(delays.at(-1)).toBe(120_000);
    backoff.reset();
    expect(backoff.next()).toBe(1_000);
  });

  it("jitters each delay by at most ±20 %", () => {
    expect(new ConnectionBackoff({ random: () => 0 }).next()).toBe(800);
    expect(new ConnectionBackoff({ random: () => 0.999_999 }).next()).toBe(1_200);
    const capped = new ConnectionBackoff({ random: () => 0.999_999 });
    for (let i = 0; i < 20; i++) capped.next();
    expect(capped.next()).toBe(144_000);
  });
});

describe("sleepUnlessAborted", () => {
  it("returns at once for a signal that is already aborted (no timer left waiting out the delay)", async () => {
    const started = performance.now();
    await Promise.race([
      sleepUnlessAborted(60_000, AbortSignal.abort()),
      new Promise((_, reject) => setTimeout(() => reject(new Error("slept despite the aborted signal")), 1_000).unref()),
    ]);
    expect(performance.now() - started).toBeLessThan(1_000);
  });

  it("returns when the signal aborts during the wait", async () => {
    const abort = new AbortController();
    setTimeout(() => abort.abort(), 10);
    const started = performance.now();
    await sleepUnlessAborted(60_000, abort.signal);
    expect(performance.now() - started).toBeLessThan(1_000);
  });
});
