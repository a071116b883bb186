import { setImmediate as nextTurn } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { EventLoopSlices } from "../../src/engine/event-loop-slices.js";

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
});
