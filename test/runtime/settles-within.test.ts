import { setTimeout as sleep } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { MAX_TIMER_MS } from "../../src/runtime/index.js";
import { settlesWithin } from "../../src/runtime/settles-within.js";

describe("settlesWithin", () => {
  it("answers true for work that settles in time, false once the time passes, and throws a rejection", async () => {
    expect(await settlesWithin(sleep(10), 5_000)).toBe(true);
    expect(await settlesWithin(new Promise(() => {}), 20)).toBe(false);
    await expect(settlesWithin(Promise.reject(new Error("store refused")), 5_000)).rejects.toThrow("store refused");
  });

  // close() waits cancelGraceMs + flushTimeoutMs, each valid up to MAX_TIMER_MS: their sum overflowed Node's timer,
  // which then fires at once, so a close with the largest bounds timed out before the store had a chance to settle.
  it("waits, rather than giving up at once, for a bound past what one Node timer holds", async () => {
    expect(await settlesWithin(sleep(50), MAX_TIMER_MS + MAX_TIMER_MS)).toBe(true);
  });
});
