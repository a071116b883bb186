import { createHook } from "node:async_hooks";
import { describe, expect, it } from "vitest";
import { onStreamEnd } from "../../src/server/stream-end.js";

/**
 * The logging interceptor's stream wrapper reports a stream's end once —
 * finished, failed or closed early — and adds at most one promise per
 * message (watches stream tens of thousands a second through it).
 */

async function* numbers(count: number, failAt?: number): AsyncGenerator<number> {
  for (let i = 0; i < count; i++) {
    if (i === failAt) throw new Error("upstream failed");
    yield i;
  }
}

function recorder(): { ends: unknown[]; onEnd: (error: unknown) => void } {
  const ends: unknown[] = [];
  return { ends, onEnd: (error) => ends.push(error) };
}

/** Promises created while `fn` runs, its awaits included. */
async function promisesCreatedBy(fn: () => Promise<void>): Promise<number> {
  let created = 0;
  const hook = createHook({
    init(_id, type) {
      if (type === "PROMISE") created++;
    },
  }).enable();
  try {
    await fn();
  } finally {
    hook.disable();
  }
  return created;
}

/** Reads `count` messages one after another, as a server writing a stream does. */
async function read(iterator: AsyncIterator<number>, count: number): Promise<void> {
  for (let i = 0; i < count; i++) await iterator.next();
}

describe("onStreamEnd", () => {
  it("passes every message through and reports the end once, without an error", async () => {
    const { ends, onEnd } = recorder();
    const seen: number[] = [];
    const wrapped = onStreamEnd(numbers(3), onEnd);
    for await (const n of wrapped) seen.push(n);
    expect(seen).toEqual([0, 1, 2]);
    expect(ends).toEqual([undefined]);
  });

  it("reports a failure once, with its error, and still throws it", async () => {
    const { ends, onEnd } = recorder();
    const seen: number[] = [];
    await expect(
      (async () => {
        for await (const n of onStreamEnd(numbers(3, 2), onEnd)) seen.push(n);
      })(),
    ).rejects.toThrow("upstream failed");
    expect(seen).toEqual([0, 1]);
    expect(ends).toHaveLength(1);
    expect(ends[0]).toBeInstanceOf(Error);
  });

  it("closes the inner stream when closed early, and reports the end once", async () => {
    const { ends, onEnd } = recorder();
    let closed = false;
    async function* endless(): AsyncGenerator<number> {
      try {
        for (let i = 0; ; i++) yield i;
      } finally {
        closed = true;
      }
    }
    for await (const n of onStreamEnd(endless(), onEnd)) if (n === 1) break;
    expect(closed).toBe(true);
    expect(ends).toEqual([undefined]);
  });

  it("adds at most one promise per message to the inner stream's", async () => {
    const step = { done: false, value: 1 } as const;
    const inner: AsyncIterable<number> = { [Symbol.asyncIterator]: () => ({ next: () => Promise.resolve(step) }) };
    const bare = await promisesCreatedBy(() => read(inner[Symbol.asyncIterator](), 100));
    const through = await promisesCreatedBy(() => read(onStreamEnd(inner, () => {})[Symbol.asyncIterator](), 100));
    expect(bare).toBeGreaterThanOrEqual(100);
    expect(through - bare).toBeLessThanOrEqual(100);
  });
});
