import type { UnknownField } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { EventRing } from "../../src/backend/event-ring.js";
import { RingReaders } from "../../src/backend/ring-readers.js";

/**
 * The clients of a shared watch (the Backend's shared WatchRuntime and
 * WatchWorker) read its ring through one RingReaders: batches bounded by
 * count and bytes, the live entries before a client's snapshot skipped, a
 * heartbeat once caught up, a client off the ring's tail ended, and the
 * upstream's end passed on at once or after what is unread.
 */
type Message = { fields: UnknownField[] } | { heartbeat: string } | { snapshot: true };

function field(bytes: number, tag = 0): UnknownField {
  const data = new Uint8Array(bytes);
  data[0] = tag;
  return { no: 1, wireType: 2, data };
}

function readers(ring: EventRing, cursor = () => "c", left = () => {}): RingReaders<Message> {
  return new RingReaders<Message>(ring, {
    wrap: (fields) => ({ fields }),
    heartbeat: () => (cursor() === "" ? undefined : { heartbeat: cursor() }),
    tooSlow: () => new ConnectError("too slow", Code.ResourceExhausted),
    left,
  });
}

/** The messages a stream yields until it waits, ends or throws. */
async function drain(stream: AsyncGenerator<Message>, count: number): Promise<Message[]> {
  const out: Message[] = [];
  for (let i = 0; i < count; i++) {
    const next = await stream.next();
    if (next.done) break;
    out.push(next.value);
  }
  return out;
}

describe("RingReaders", () => {
  it("sends the ring in batches of at most 256 events and about 1 MiB, skipping the live entries before the snapshot", async () => {
    const ring = new EventRing(10_000, 64 << 20);
    ring.push(field(1, 1), "");
    ring.push(field(1, 2), "c2");
    for (let i = 0; i < 600; i++) ring.push(field(10), "");
    for (let i = 0; i < 3; i++) ring.push(field(600 * 1024), "");
    const stream = readers(ring).read({ snapshot: true }, 0, 1, new AbortController().signal);
    const [first, ...batches] = await drain(stream, 6);
    expect(first).toEqual({ snapshot: true });
    const sizes = batches.map((message) => ("fields" in message ? message.fields.length : -1));
    // Entry 0 is live and before the snapshot (replayUntil 1): skipped. 256 entries a batch; the third's last
    // 90 small ones and one large fit 1 MiB, a second large one would not: each large one then goes alone.
    expect(sizes).toEqual([255, 256, 91, 1, 1]);
    const firstBatch = batches[0] as { fields: UnknownField[] };
    expect(firstBatch.fields[0]?.data[0]).toBe(2);
  });

  it("gives a caught-up client its due heartbeat, built when sent; none while there is no cursor", async () => {
    const ring = new EventRing(100, 1 << 20);
    let cursor = "";
    const shared = readers(ring, () => cursor);
    const stream = shared.read({ snapshot: true }, 0, 0, new AbortController().signal);
    await drain(stream, 1);
    const waiting = stream.next();
    shared.wake(true);
    cursor = "c9";
    shared.wake(true);
    expect((await waiting).value).toEqual({ heartbeat: "c9" });
  });

  it("ends a client that fell off the ring's tail with the watch's error", async () => {
    const ring = new EventRing(8, 1 << 20);
    const stream = readers(ring).read({ snapshot: true }, 0, 0, new AbortController().signal);
    await drain(stream, 1);
    for (let i = 0; i < 20; i++) ring.push(field(1), "");
    await expect(stream.next()).rejects.toThrow("too slow");
  });

  it("ends clients after what they have not read, or at once, as the upstream's end says", async () => {
    const ring = new EventRing(100, 1 << 20);
    const shared = readers(ring);
    const signal = new AbortController().signal;
    const after = shared.read({ snapshot: true }, 0, 0, signal);
    const now = shared.read({ snapshot: true }, 0, 0, signal);
    ring.push(field(1), "c1");
    shared.fail(new ConnectError("gone", Code.NotFound), false);
    expect(await drain(after, 2)).toHaveLength(2);
    await expect(after.next()).rejects.toThrow("gone");
    shared.fail(new ConnectError("removed", Code.NotFound), true);
    await drain(now, 1);
    await expect(now.next()).rejects.toThrow("removed");
    const ended = shared.read({ snapshot: true }, ring.next, 0, signal);
    shared.end();
    expect(await drain(ended, 5)).toEqual([{ snapshot: true }]);
  });

  it("releases a client's place on its abort, and tells the watch it left", async () => {
    const ring = new EventRing(100, 1 << 20);
    let left = 0;
    const shared = readers(ring, undefined, () => left++);
    const client = new AbortController();
    const stream = shared.read({ snapshot: true }, 0, 0, client.signal);
    await drain(stream, 1);
    const waiting = stream.next();
    expect(shared.size).toBe(1);
    client.abort();
    expect([shared.size, left]).toEqual([0, 1]);
    expect((await waiting).done).toBe(true);
    expect(left).toBe(1);
  });
});
