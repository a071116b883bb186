import { describe, expect, it } from "vitest";
import { EventRing } from "../../src/backend/event-ring.js";

function field(bytes: number) {
  return { no: 1, wireType: 2, data: new Uint8Array(bytes) };
}

describe("EventRing", () => {
  it("maps a cursor to the event after it, and the opening snapshot's cursor to the first event", () => {
    const ring = new EventRing(100, 1 << 20);
    ring.opened("c0");
    ring.push(field(1), "c1");
    ring.push(field(1), "");
    ring.push(field(1), "c3");
    expect(ring.positionAfter("c0")).toBe(0);
    expect(ring.positionAfter("c1")).toBe(1);
    expect(ring.positionAfter("c3")).toBe(3);
    expect(ring.positionAfter("unknown")).toBeUndefined();
    expect(ring.next).toBe(3);
    expect([ring.at(1).cursor, ring.at(2).cursor]).toEqual(["", "c3"]);
  });

  it("drops the oldest events to 7/8 of the count bound, and forgets cursors it can no longer resume", () => {
    const ring = new EventRing(8, 1 << 20);
    ring.opened("c0");
    for (let i = 1; i <= 9; i++) ring.push(field(1), `c${i}`);
    // 9 > 8 events: down to 7, so seqs 0 and 1 are gone.
    expect(ring.first).toBe(2);
    expect(ring.next).toBe(9);
    expect(ring.positionAfter("c0")).toBeUndefined();
    expect(ring.positionAfter("c1")).toBeUndefined();
    expect(ring.knows("c1")).toBe(false);
    expect(ring.positionAfter("c2")).toBe(2);
  });

  it("forgets every cursor it can no longer resume, however many evictions pass", () => {
    const ring = new EventRing(8, 1 << 20);
    ring.opened("c0");
    for (let i = 1; i <= 10_000; i++) ring.push(field(1), `c${i}`);
    let known = 0;
    for (let i = 0; i <= 10_000; i++) if (ring.knows(`c${i}`)) known++;
    // One per event held, plus the cursor just before the oldest (still resumable).
    expect(known).toBeLessThanOrEqual(9);
    expect(ring.positionAfter(`c${ring.first}`)).toBe(ring.first);
  });

  it("drops by bytes too, but always keeps the newest event", () => {
    const ring = new EventRing(100, 1000);
    ring.push(field(600), "a");
    ring.push(field(600), "b");
    expect(ring.first).toBe(1);
    ring.push(field(5000), "c");
    expect(ring.first).toBe(2);
    expect(ring.next - ring.first).toBe(1);
    expect(ring.at(ring.first).field.data.byteLength).toBe(5000);
    expect(ring.positionAfter("b")).toBe(2);
  });

  it("after clear, knows no cursor and keeps counting seqs forward", () => {
    const ring = new EventRing(100, 1 << 20);
    ring.opened("c0");
    ring.push(field(1), "c1");
    ring.clear();
    expect(ring.knows("c0")).toBe(false);
    expect(ring.first).toBe(1);
    expect(ring.next).toBe(1);
    ring.push(field(1), "d1");
    expect(ring.positionAfter("d1")).toBe(2);
  });
});
