import { describe, expect, it } from "vitest";
import { MIN_LOOKUP_MS, UnansweredLookups } from "../../src/runtime/index.js";

/**
 * The one mechanism every lookup on the host goes through (host-locations.ts,
 * the engine's private paths and program checks): a lookup is awaited within
 * its deadline, a key is asked one lookup at a time, and late ones are
 * remembered until they answer.
 */

/** A lookup that answers when `answer` is called. */
function held<T>(): { lookup: () => Promise<T>; asked: () => number; answer: (value: T) => void } {
  let asked = 0;
  let answer: (value: T) => void = () => {};
  const answered = new Promise<T>((resolve) => {
    answer = resolve;
  });
  return {
    lookup: () => {
      asked++;
      return answered;
    },
    asked: () => asked,
    answer: (value) => answer(value),
  };
}

describe("UnansweredLookups", () => {
  it("asks a key one lookup at a time: the next waits for the last, and is refused unasked once it is late", async () => {
    const lookups = new UnansweredLookups();
    const hung = held<string>();
    const next = held<string>();
    const first = lookups.ask("root", hung.lookup, Date.now() + 100);
    const second = lookups.ask("root", next.lookup, Date.now() + 5_000);
    // Another key is not held up.
    expect(await lookups.ask("other", async () => "fine", Date.now() + 5_000)).toEqual({ kind: "answered", value: "fine" });
    expect(hung.asked()).toBe(1);
    expect(next.asked()).toBe(0);
    expect(await first).toEqual({ kind: "late" });
    expect(await second).toEqual({ kind: "key_unanswered" });
    expect(next.asked()).toBe(0);
    expect(lookups.isUnanswered("root")).toBe(true);
    // Once it answers, the key is asked again.
    hung.answer("late answer");
    await new Promise((resolve) => setImmediate(resolve));
    expect(lookups.isUnanswered("root")).toBe(false);
    expect(await lookups.ask("root", async () => "again", Date.now() + 5_000)).toEqual({ kind: "answered", value: "again" });
  });

  it("keeps a key's turn while a lookup is in flight, even after a waiter with an earlier deadline gave up", async () => {
    const lookups = new UnansweredLookups();
    const hung = held<string>();
    const other = held<string>();
    // A is asked; B (a shorter deadline: another place of a CreateWorker whose deadline is older) gives up waiting:
    // it timed out behind A, which is in flight and not yet late, so it is told it waited, not that the key is unanswered.
    const a = lookups.ask("root", hung.lookup, Date.now() + 1_000);
    expect(await lookups.ask("root", other.lookup, Date.now() + 50)).toEqual({ kind: "waited" });
    expect(lookups.isUnanswered("root")).toBe(false);
    // C comes while A is still in flight: it must wait for A, not ask the hung root a second time.
    const c = lookups.ask("root", other.lookup, Date.now() + 1_000);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(hung.asked()).toBe(1);
    expect(other.asked()).toBe(0);
    hung.answer("answered late");
    expect(await a).toEqual({ kind: "answered", value: "answered late" });
    other.answer("c's answer");
    expect(await c).toEqual({ kind: "answered", value: "c's answer" });
    expect(other.asked()).toBe(1);
  });

  it("lets the next lookup of a key go as soon as the last answers", async () => {
    const lookups = new UnansweredLookups();
    const slow = held<string>();
    const first = lookups.ask("root", slow.lookup, Date.now() + 5_000);
    const second = lookups.ask("root", async () => "second", Date.now() + 5_000);
    slow.answer("first");
    expect(await first).toEqual({ kind: "answered", value: "first" });
    expect(await second).toEqual({ kind: "answered", value: "second" });
  });

  it("refuses counted lookups unasked while the bound of counted ones is unanswered, and not uncounted ones", async () => {
    const lookups = new UnansweredLookups(2);
    const hung = [held<string>(), held<string>()];
    expect(await Promise.all(hung.map((h, i) => lookups.ask(`k${i}`, h.lookup, Date.now() + 20)))).toEqual([
      { kind: "late" },
      { kind: "late" },
    ]);
    const refused = held<string>();
    expect(await lookups.ask("k2", refused.lookup, Date.now() + 5_000)).toEqual({ kind: "host_full", unanswered: 2 });
    expect(refused.asked()).toBe(0);
    expect(await lookups.ask("k2", async () => "restore", Date.now() + 5_000, false)).toEqual({ kind: "answered", value: "restore" });
    for (const h of hung) h.answer("done");
    await new Promise((resolve) => setImmediate(resolve));
    expect(lookups.full()).toBeUndefined();
  });

  it("throws a lookup's rejection before its deadline, and the key is asked again after it", async () => {
    const lookups = new UnansweredLookups();
    await expect(lookups.ask("root", () => Promise.reject(new Error("ENOENT")), Date.now() + 5_000)).rejects.toThrow("ENOENT");
    expect(await lookups.ask("root", async () => 1, Date.now() + 5_000)).toEqual({ kind: "answered", value: 1 });
  });

  it("does not ask, nor count unanswered, a waiter whose turn comes with too little of its deadline left: it waited", async () => {
    const lookups = new UnansweredLookups(1);
    const slow = held<string>();
    const waiter = held<string>();
    const started = Date.now();
    const first = lookups.ask("root", slow.lookup, started + 5_000);
    // The key's lookup answers just before the waiter's deadline (or after it, on a slow machine: the same outcome).
    const second = lookups.ask("root", waiter.lookup, started + 80 + MIN_LOOKUP_MS / 2);
    setTimeout(() => slow.answer("slow"), 80);
    expect(await first).toEqual({ kind: "answered", value: "slow" });
    expect(await second).toEqual({ kind: "waited" });
    // It never ran its lookup, so nothing of its own is unanswered: the key and the host stay askable.
    expect(waiter.asked()).toBe(0);
    expect(lookups.isUnanswered("root")).toBe(false);
    expect(lookups.full()).toBeUndefined();
    expect(await lookups.ask("other", async () => "fine", Date.now() + 5_000)).toEqual({ kind: "answered", value: "fine" });
  });

  it("does not ask a lookup whose deadline has passed (spent by the lookups before it), nor count it", async () => {
    const lookups = new UnansweredLookups(1);
    const spent = held<string>();
    expect(await lookups.ask("root", spent.lookup, Date.now() - 1)).toEqual({ kind: "no_time" });
    expect([spent.asked(), lookups.isUnanswered("root"), lookups.full()]).toEqual([0, false, undefined]);
  });
});
