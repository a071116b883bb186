import { Code } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { RuntimeError } from "../../src/runtime/errors.js";
import { RESPONSE_RESERVE_BYTES } from "../../src/runtime/limits.js";
import { Subscription, type StreamItem } from "../../src/runtime/subscription.js";

const item = (seq: number): StreamItem<never> => ({ seq: BigInt(seq), bytes: new Uint8Array([seq & 0xff]) });
const never = new AbortController().signal;
/** An item whose encoding is `size` bytes. */
const sized = (seq: number, size: number): StreamItem<never> => ({ seq: BigInt(seq), bytes: new Uint8Array(size) });

async function takeAll(subscription: Subscription<never>, maxItems: number): Promise<number[][]> {
  const batches: number[][] = [];
  for (;;) {
    const wait = await subscription.next(maxItems, Infinity, 1, never);
    if (wait.kind !== "items") return batches;
    batches.push(wait.items.map((i) => Number(i.seq)));
  }
}

describe("Subscription", () => {
  it("hands a lone item over at once", async () => {
    const subscription = new Subscription<never>({ maxItems: 10, maxBytes: Infinity }, () => {});
    const waiting = subscription.next(512, Infinity, 60_000, never);
    subscription.push(item(1));
    const wait = await waiting;
    expect(wait.kind === "items" && wait.items.map((i) => i.seq)).toEqual([1n]);
  });

  it("hands a deep backlog over in order, in batches of at most maxItems", async () => {
    const subscription = new Subscription<never>({ maxItems: 100_000, maxBytes: Infinity }, () => {});
    const total = 5_000;
    for (let seq = 1; seq <= total; seq++) subscription.push(item(seq));
    const batches = await takeAll(subscription, 512);
    expect(batches.every((batch) => batch.length <= 512)).toBe(true);
    expect(batches.flat()).toEqual(Array.from({ length: total }, (_, i) => i + 1));
  });

  it("keeps order when items arrive while a backlog is being taken", async () => {
    const subscription = new Subscription<never>({ maxItems: 100_000, maxBytes: Infinity }, () => {});
    let next = 1;
    const received: number[] = [];
    for (let round = 0; round < 50; round++) {
      for (let i = 0; i < 300; i++) subscription.push(item(next++));
      const wait = await subscription.next(100, Infinity, 1, never);
      if (wait.kind === "items") received.push(...wait.items.map((i) => Number(i.seq)));
    }
    received.push(...(await takeAll(subscription, 100)).flat());
    expect(received).toEqual(Array.from({ length: next - 1 }, (_, i) => i + 1));
  });

  it("counts only items not yet taken against the backlog bound", async () => {
    const closed: Subscription<never>[] = [];
    const subscription = new Subscription<never>({ maxItems: 3_000, maxBytes: Infinity }, (s) => closed.push(s));
    for (let seq = 1; seq <= 2_500; seq++) subscription.push(item(seq));
    await subscription.next(2_000, Infinity, 1, never);
    for (let seq = 2_501; seq <= 5_000; seq++) subscription.push(item(seq));
    expect(subscription.closed).toBe(false);
    for (let seq = 5_001; seq <= 5_100; seq++) subscription.push(item(seq));
    expect(subscription.closed).toBe(true);
    const wait = await subscription.next(512, Infinity, 1, never);
    expect(wait.kind).toBe("closed");
    expect(wait.kind === "closed" && wait.error?.reason).toBe(ErrorReason.SUBSCRIBER_TOO_SLOW);
    expect(closed).toEqual([subscription]);
  });
  it("waits only when there is nothing to poll, and a push, the idle timer or the signal ends the wait", async () => {
    const subscription = new Subscription<never>({ maxItems: 10, maxBytes: Infinity }, () => {});
    const waiting = subscription.wait(60_000, never);
    expect(waiting).toBeInstanceOf(Promise);
    subscription.push(item(1));
    await waiting;
    // Items are there: no wait, and poll takes them.
    expect(subscription.wait(60_000, never)).toBeUndefined();
    const polled = subscription.poll(512, Infinity, never);
    expect(polled.kind === "items" && polled.items.map((i) => i.seq)).toEqual([1n]);
    // Nothing queued: the idle timer ends the wait, and poll says "idle".
    await subscription.wait(1, never);
    expect(subscription.poll(512, Infinity, never).kind).toBe("idle");
    // The signal ends a wait and the subscription reads as closed for it.
    const controller = new AbortController();
    const aborted = subscription.wait(60_000, controller.signal);
    controller.abort();
    await aborted;
    expect(subscription.poll(512, Infinity, controller.signal).kind).toBe("closed");
    expect(subscription.wait(60_000, controller.signal)).toBeUndefined();
  });

  it("ended after its queue, hands over every item it holds first, then the error, and takes no more", async () => {
    const closed: Subscription<never>[] = [];
    const subscription = new Subscription<never>({ maxItems: 100, maxBytes: Infinity }, (s) => closed.push(s));
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
    const wait = await subscription.next(3, Infinity, 1, never);
    expect(wait.kind === "closed" && wait.error).toBe(deleted);
  });
  it("is ended with SUBSCRIBER_TOO_SLOW naming the byte bound once its queued bytes would pass it, whatever the count", async () => {
    const closed: Subscription<never>[] = [];
    const subscription = new Subscription<never>({ maxItems: 50_000, maxBytes: 10_000 }, (s) => closed.push(s));
    for (let seq = 1; seq <= 10; seq++) subscription.push(sized(seq, 1_000));
    expect(subscription.closed).toBe(false);
    subscription.push(sized(11, 1));
    expect(subscription.closed).toBe(true);
    expect(closed).toEqual([subscription]);
    const wait = await subscription.next(512, Infinity, 1, never);
    expect(wait.kind).toBe("closed");
    const error = wait.kind === "closed" ? wait.error : undefined;
    expect([error?.code, error?.reason, error?.metadata]).toEqual([
      Code.ResourceExhausted,
      ErrorReason.SUBSCRIBER_TOO_SLOW,
      { max_backlog_bytes: "10000" },
    ]);
  });

  it("counts only bytes not yet taken against the byte bound, and always takes a lone item", async () => {
    const subscription = new Subscription<never>({ maxItems: 50_000, maxBytes: 10_000 }, () => {});
    for (let seq = 1; seq <= 10; seq++) subscription.push(sized(seq, 1_000));
    await subscription.next(512, Infinity, 1, never);
    for (let seq = 11; seq <= 20; seq++) subscription.push(sized(seq, 1_000));
    expect(subscription.closed).toBe(false);
    await subscription.next(512, Infinity, 1, never);
    // Nothing queued: one item over the bound is still taken, so a watcher keeping up makes progress.
    subscription.push(sized(21, 20_000));
    expect(subscription.closed).toBe(false);
    const wait = await subscription.next(512, Infinity, 1, never);
    expect(wait.kind === "items" && wait.items.map((i) => i.seq)).toEqual([21n]);
  });

  it("hands every batch over fitting one message: an item no message can carry is refused with LIMIT_EXCEEDED", async () => {
    const subscription = new Subscription<never>({ maxItems: 50_000, maxBytes: 1 << 20 }, () => {});
    subscription.push(sized(1, 100));
    subscription.push(sized(2, 10_000));
    // 100 bytes fit a 200-byte message (with their tag and length); the next item fits no message of 200 bytes.
    const first = await subscription.next(512, 200, 1, never);
    expect(first.kind === "items" && first.items.map((i) => i.seq)).toEqual([1n]);
    const error = await subscription.next(512, 200, 1, never).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(RuntimeError);
    const refused = error as RuntimeError;
    expect([refused.code, refused.reason, refused.metadata]).toEqual([
      Code.ResourceExhausted,
      ErrorReason.LIMIT_EXCEEDED,
      { limit: String(200 + RESPONSE_RESERVE_BYTES) },
    ]);
  });

  it("hands a deep backlog of large items over in order, in batches that fit one message's bytes", async () => {
    const subscription = new Subscription<never>({ maxItems: 50_000, maxBytes: 400_000 }, () => {});
    const total = 300;
    for (let seq = 1; seq <= total; seq++) subscription.push(sized(seq, 1_000 + seq));
    const maxBytes = 10_000;
    const batches: StreamItem<never>[][] = [];
    for (;;) {
      const wait = await subscription.next(512, maxBytes, 1, never);
      if (wait.kind !== "items") break;
      batches.push(wait.items);
    }
    // Each batch fits maxBytes as repeated-field elements (tag, length varint, body), and is as full as it can be.
    const fieldBytes = (items: StreamItem<never>[]): number => items.reduce((sum, i) => sum + 1 + 2 + i.bytes.byteLength, 0);
    expect(batches.every((batch) => fieldBytes(batch) <= maxBytes)).toBe(true);
    for (const [i, batch] of batches.slice(0, -1).entries()) {
      const nextItem = batches[i + 1]?.[0] as StreamItem<never>;
      expect(fieldBytes([...batch, nextItem])).toBeGreaterThan(maxBytes);
    }
    expect(batches.flat().map((i) => Number(i.seq))).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    // The bytes taken are no longer counted: a new backlog up to the bound is accepted.
    for (let seq = total + 1; seq <= total + 100; seq++) subscription.push(sized(seq, 1_000));
    expect(subscription.closed).toBe(false);
  });
});
