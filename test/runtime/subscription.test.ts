import { Code } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { RuntimeError } from "../../src/runtime/errors.js";
import { Subscription, type StreamItem } from "../../src/runtime/subscription.js";

const item = (seq: number): StreamItem<never> => ({ seq: BigInt(seq), bytes: new Uint8Array([seq & 0xff]) });
const never = new AbortController().signal;

async function takeAll(subscription: Subscription<never>, maxItems: number): Promise<number[][]> {
  const batches: number[][] = [];
  for (;;) {
    const wait = await subscription.next(maxItems, 1, never);
    if (wait.kind !== "items") return batches;
    batches.push(wait.items.map((i) => Number(i.seq)));
  }
}

describe("Subscription", () => {
  it("hands a lone item over at once", async () => {
    const subscription = new Subscription<never>(10, () => {});
    const waiting = subscription.next(512, 60_000, never);
    subscription.push(item(1));
    const wait = await waiting;
    expect(wait.kind === "items" && wait.items.map((i) => i.seq)).toEqual([1n]);
  });

  it("hands a deep backlog over in order, in batches of at most maxItems", async () => {
    const subscription = new Subscription<never>(100_000, () => {});
    const total = 5_000;
    for (let seq = 1; seq <= total; seq++) subscription.push(item(seq));
    const batches = await takeAll(subscription, 512);
    expect(batches.every((batch) => batch.length <= 512)).toBe(true);
    expect(batches.flat()).toEqual(Array.from({ length: total }, (_, i) => i + 1));
  });

  it("keeps order when items arrive while a backlog is being taken", async () => {
    const subscription = new Subscription<never>(100_000, () => {});
    let next = 1;
    const received: number[] = [];
    for (let round = 0; round < 50; round++) {
      for (let i = 0; i < 300; i++) subscription.push(item(next++));
      const wait = await subscription.next(100, 1, never);
      if (wait.kind === "items") received.push(...wait.items.map((i) => Number(i.seq)));
    }
    received.push(...(await takeAll(subscription, 100)).flat());
    expect(received).toEqual(Array.from({ length: next - 1 }, (_, i) => i + 1));
  });

  it("counts only items not yet taken against the backlog bound", async () => {
    const closed: Subscription<never>[] = [];
    const subscription = new Subscription<never>(3_000, (s) => closed.push(s));
    for (let seq = 1; seq <= 2_500; seq++) subscription.push(item(seq));
    await subscription.next(2_000, 1, never);
    for (let seq = 2_501; seq <= 5_000; seq++) subscription.push(item(seq));
    expect(subscription.closed).toBe(false);
    for (let seq = 5_001; seq <= 5_100; seq++) subscription.push(item(seq));
    expect(subscription.closed).toBe(true);
    const wait = await subscription.next(512, 1, never);
    expect(wait.kind).toBe("closed");
    expect(wait.kind === "closed" && wait.error?.reason).toBe(ErrorReason.SUBSCRIBER_TOO_SLOW);
    expect(closed).toEqual([subscription]);
  });
  it("waits only when there is nothing to poll, and a push, the idle timer or the signal ends the wait", async () => {
    const subscription = new Subscription<never>(10, () => {});
    const waiting = subscription.wait(60_000, never);
    expect(waiting).toBeInstanceOf(Promise);
    subscription.push(item(1));
    await waiting;
    // Items are there: no wait, and poll takes them.
    expect(subscription.wait(60_000, never)).toBeUndefined();
    const polled = subscription.poll(512, never);
    expect(polled.kind === "items" && polled.items.map((i) => i.seq)).toEqual([1n]);
    // Nothing queued: the idle timer ends the wait, and poll says "idle".
    await subscription.wait(1, never);
    expect(subscription.poll(512, never).kind).toBe("idle");
    // The signal ends a wait and the subscription reads as closed for it.
    const controller = new AbortController();
    const aborted = subscription.wait(60_000, controller.signal);
    controller.abort();
    await aborted;
    expect(subscription.poll(512, controller.signal).kind).toBe("closed");
    expect(subscription.wait(60_000, controller.signal)).toBeUndefined();
  });

  it("ended after its queue, hands over every item it holds first, then the error, and takes no more", async () => {
    const closed: Subscription<never>[] = [];
    const subscription = new Subscription<never>(100, (s) => closed.push(s));
    for (let seq = 1; seq <= 5; seq++) subscription.push(item(seq));
    const deleted = new RuntimeError(Code.NotFound, ErrorReason.NOT_FOUND, "worker w was deleted");
    subscription.closeAfterQueued(deleted);
    expect(subscription.closed).toBe(true);
    expect(closed).toEqual([subscription]);
    subscription.push(item(6));
    expect(await takeAll(subscription, 3)).toEqual([
      [1, 2, 3],
      [4, 5],
    ]);
    const wait = await subscription.next(3, 1, never);
    expect(wait.kind === "closed" && wait.error).toBe(deleted);
  });
});
