/**
 * At most this many counted lookups may be left unanswered past their
 * deadline before every new counted one is refused at once. A lookup runs
 * on a thread of libuv's pool (4 threads by default), which a timeout does
 * not free: left unbounded, repeated asks of a hung mount would take every
 * thread, and then the file store's writes would wait behind them.
 */
export const MAX_UNANSWERED_LOOKUPS = 2;

/**
 * A lookup that waited its turn under its key is asked only with at least
 * this much of its deadline left. Asked with less, even a healthy file
 * system's answer (a hop to the thread pool and back, behind the store's
 * writes) would come after it, and it would be counted unanswered, and its
 * key refused to others, for a lookup never given the time to answer.
 */
export const MIN_LOOKUP_MS = 20;

/**
 * The host's lookups and how long each may take (limits.hostPathTimeoutMs):
 * what the runtime locates its roots with, and hands its execution backend
 * (ExecutionBackend.ready) so the engine's lookups share its bound and its
 * timeout.
 */
export interface HostLookups {
  lookups: UnansweredLookups;
  timeoutMs: number;
}

/** What became of one lookup ({@link UnansweredLookups.ask}). */
export type LookupOutcome<T> =
  | { kind: "answered"; value: T }
  /** Asked, and not answered by the deadline: now counted unanswered until it is. */
  | { kind: "late" }
  /** Not asked: an earlier lookup under the same key is past its deadline and still unanswered. */
  | { kind: "key_unanswered" }
  /**
   * Not asked: its deadline passed, or all but {@link MIN_LOOKUP_MS} of it,
   * while it waited its turn behind an earlier lookup under the same key
   * that was still unanswered (in flight, not yet past its own deadline).
   * Nothing of its own is left unanswered, so nothing is counted.
   */
  | { kind: "waited" }
  /**
   * Not asked: its deadline had passed when it would have been (a caller's
   * one deadline for several lookups, spent by those before it). Nothing is
   * counted.
   */
  | { kind: "no_time" }
  /** Not asked: `unanswered` counted lookups are unanswered on the host. */
  | { kind: "host_full"; unanswered: number };

/**
 * Lookups on the host's file system (a realpath, a stat), each awaited off
 * the event loop within a deadline, and those left unanswered remembered
 * until they answer: per key (a workspace root, a directory), so a caller
 * stops asking where one hangs, and in total for the `counted` ones, so
 * hung lookups cannot take the pool's threads. A key is asked one lookup
 * at a time: a lookup waits for the one before it under its key to answer
 * or pass its deadline, so concurrent callers into one hung key hold one
 * thread, not one each, before the first is even late. One mechanism, and
 * one instance per runtime (the runtime hands its own to its backend at
 * ExecutionBackend.ready): workspace and mount locations
 * (host-locations.ts) and the engine's private paths, program checks,
 * workspaces and sandbox mounts, so one bound holds for them all.
 */
export class UnansweredLookups {
  /** Key → lookups under it past their deadline and still unanswered, counted or not. */
  private readonly byKey = new Map<string, number>();
  /** Of those, the counted ones. */
  private countedTotal = 0;
  /** Key → the last lookup asked or waiting under it, settled once it answers or passes its deadline. */
  private readonly turns = new Map<string, Promise<unknown>>();

  constructor(private readonly maxUnanswered: number = MAX_UNANSWERED_LOOKUPS) {}

  /** Whether a lookup under `key` is past its deadline and still unanswered. */
  isUnanswered(key: string): boolean {
    return this.byKey.has(key);
  }

  /** How many counted lookups are unanswered, when so many that no counted one may be asked now; else undefined. */
  full(): number | undefined {
    return this.countedTotal >= this.maxUnanswered ? this.countedTotal : undefined;
  }

  /**
   * Asks `lookup` under `key` in its turn (after the key's last lookup
   * answered or passed its deadline, never past `deadline`, epoch ms),
   * unless a lookup under `key` is unanswered, its turn did not come with
   * {@link MIN_LOOKUP_MS} of `deadline` left, `deadline` has passed, or, when `counted`, the host
   * is {@link full}: then it is not asked. One not answered by `deadline` is
   * counted against `key` (and, when `counted`, the total) until it
   * settles. A rejection before the deadline is thrown.
   */
  ask<T>(key: string, lookup: () => Promise<T>, deadline: number, counted = true): Promise<LookupOutcome<T>> {
    const before = this.turns.get(key);
    const mine = this.inTurn(before, key, lookup, deadline, counted);
    // The key's turn passes once this one and every one before it have settled: a waiter with an earlier
    // deadline that gives up must not let the next caller past a lookup still in flight.
    const settled = Promise.all([before, mine.catch(() => undefined)]);
    this.turns.set(key, settled);
    void settled.then(() => {
      if (this.turns.get(key) === settled) this.turns.delete(key);
    });
    return mine;
  }

  private async inTurn<T>(
    before: Promise<unknown> | undefined,
    key: string,
    lookup: () => Promise<T>,
    deadline: number,
    counted: boolean,
  ): Promise<LookupOutcome<T>> {
    // Waits for the lookups before it under the key, at most until its own deadline.
    const turn =
      before === undefined
        ? true
        : await withinDeadline(
            before.then(() => true),
            deadline,
          );
    if (turn === undefined) return { kind: "waited" };
    if (this.isUnanswered(key)) return { kind: "key_unanswered" };
    if (before !== undefined && deadline - Date.now() < MIN_LOOKUP_MS) return { kind: "waited" };
    if (deadline <= Date.now()) return { kind: "no_time" };
    const full = counted ? this.full() : undefined;
    if (full !== undefined) return { kind: "host_full", unanswered: full };
    const answer = lookup();
    const value = await withinDeadline(
      answer.then((found) => ({ found })),
      deadline,
    );
    if (value !== undefined) return { kind: "answered", value: value.found };
    this.byKey.set(key, (this.byKey.get(key) ?? 0) + 1);
    if (counted) this.countedTotal++;
    const settled = (): void => {
      const left = (this.byKey.get(key) ?? 1) - 1;
      if (left > 0) this.byKey.set(key, left);
      else this.byKey.delete(key);
      if (counted) this.countedTotal--;
    };
    answer.then(settled, settled);
    return { kind: "late" };
  }
}

/** `answer`'s value, or undefined when it is not had by `deadline`; a rejection before it is thrown. */
async function withinDeadline<T>(answer: Promise<T>, deadline: number): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), Math.max(0, deadline - Date.now()));
  });
  try {
    return await Promise.race([answer, late]);
  } finally {
    clearTimeout(timer);
  }
}
