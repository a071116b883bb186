import { setImmediate as nextTurn } from "node:timers/promises";
import { afterEach, describe, expect, it, vi } from "vitest";
import { EventLoopSlices, nextTurnForSlices, turnBudget } from "../../src/engine/event-loop-slices.js";

describe("EventLoopSlices", () => {
  it("asks for a pause once a slice's item bound is reached, and starts afresh after the pause", async () => {
    const slices = new EventLoopSlices(100, Number.POSITIVE_INFINITY);
    const pausesAt: number[] = [];
    for (let item = 1; item <= 350; item++) {
      if (slices.spend()) {
        pausesAt.push(item);
        await slices.pause();
      }
    }
    expect(pausesAt).toEqual([100, 200, 300]);
  });

  it("never asks a stream that brings a few items per turn of the loop to pause", async () => {
    const slices = new EventLoopSlices(64, Number.POSITIVE_INFINITY);
    let pauses = 0;
    for (let turn = 0; turn < 100; turn++) {
      for (let item = 0; item < 5; item++) if (slices.spend()) pauses++;
      await nextTurn();
    }
    expect(pauses).toBe(0);
  });

  describe("with the loop's timers held", () => {
    afterEach(() => vi.useRealTimers());
    /** A pause that never resumes fails in this long, not at the suite's 60 s limit. */
    const HANG_MS = 5_000;

    it(
      "resumes after what the check phase queues behind the pause (an RPC's flush and trailers), not before it",
      async () => {
        // Held, so only the check-phase path can resume the slice here (the timer would win whenever the loop's
        // millisecond clock ticks first, which a loaded machine makes likely).
        vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
        const slices = new EventLoopSlices(32, Number.POSITIVE_INFINITY);
        const order: string[] = [];
        let paused: Promise<void> | undefined;
        for (let item = 1; item <= 32 && !paused; item++)
          if (slices.spend()) paused = slices.pause().then(() => void order.push("resumed"));
        setImmediate(() => order.push("queued after the pause"));
        await paused;
        expect(order).toEqual(["queued after the pause", "resumed"]);
      },
      HANG_MS,
    );

    it(
      "resumes a lone stream two check phases on, without waiting for a timer",
      async () => {
        vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout"] });
        const slices = new EventLoopSlices(32, Number.POSITIVE_INFINITY);
        let pauses = 0;
        for (let item = 1; item <= 100; item++) {
          if (slices.spend()) {
            pauses++;
            await slices.pause();
          }
        }
        expect(pauses).toBe(3);
        // The timers each pause armed were cleared when it resumed.
        expect(vi.getTimerCount()).toBe(0);
      },
      HANG_MS,
    );

    it(
      "resumes from the timers phase when no check phase comes",
      async () => {
        vi.useFakeTimers({ toFake: ["setImmediate"] });
        await nextTurnForSlices();
        // The first hop through the check phase is still queued (held): the real timer resumed it.
        expect(vi.getTimerCount()).toBe(1);
      },
      HANG_MS,
    );
  });

  it("shares one time budget among every stream until the loop turns", () => {
    const a = new EventLoopSlices(1_000, Number.POSITIVE_INFINITY, 5);
    const b = new EventLoopSlices(1_000, Number.POSITIVE_INFINITY, 5);
    // A starts the shared clock at its first check (item 16), then holds the loop past the budget.
    let aPausedAt = 0;
    for (let item = 1; item <= 64 && aPausedAt === 0; item++) {
      if (item === 17) holdFor(6);
      if (a.spend()) aPausedAt = item;
    }
    expect(aPausedAt).toBe(32);
    // B, in the same stretch of the loop, finds the budget spent at its first check, though its own slice is fresh.
    let bPausedAt = 0;
    for (let item = 1; item <= 64 && bPausedAt === 0; item++) if (b.spend()) bPausedAt = item;
    expect(bPausedAt).toBe(16);
  });

  it("lets run starts go on while the stretch's budget lasts, and the rest in later turns of the loop", async () => {
    await nextTurn();
    const started: number[] = [];
    // Ten starts arriving together, each holding the loop 2 ms: at a 5 ms budget, three fit a stretch.
    const start = async (n: number): Promise<void> => {
      const wait = turnBudget(5);
      if (wait) await wait;
      holdFor(2);
      started.push(n);
    };
    const all = Promise.all(Array.from({ length: 10 }, (_, n) => start(n)));
    // The first ones went on at once, without waiting for a turn; at most three fit (fewer if the host preempted us).
    expect(started.length).toBeGreaterThanOrEqual(1);
    expect(started.length).toBeLessThanOrEqual(3);
    await all;
    expect(started).toHaveLength(10);
    // With the budget left, no promise at all: nothing to await.
    await nextTurn();
    expect(turnBudget(5)).toBeUndefined();
  });
});

/** Keeps the CPU busy for `ms` milliseconds. */
function holdFor(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // busy
  }
}
