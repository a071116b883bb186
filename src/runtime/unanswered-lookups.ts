/**
 * At most this many counted lookups may be left unanswered past their
 * deadline before every new counted one is refused at once. A lookup runs
 * on a thread of libuv's pool (4 threads by default), which a timeout does
 * not free: left unbounded, repeated asks of a hung mount would take every
 * thread, and then the file store's writes would wait behind them.
 */
export const MAX_UNANSWERED_LOOKUPS = 2;

/**
 * Lookups on the host's file system (a realpath, a stat), each awaited off
 * the event loop within a deadline, and those left unanswered remembered
 * until they answer: per key (a workspace root, say), so a caller stops
 * asking where one hangs, and in total for the `counted` ones, so hung
 * lookups cannot take the pool's threads. One mechanism for every such
 * lookup: workspace and mount locations (host-locations.ts) and the
 * engine's private paths and program checks.
 */
export class UnansweredLookups {
  /** Key → lookups under it past their deadline and still unanswered, counted or not. */
  private readonly byKey = new Map<string, number>();
  /** Of those, the counted ones. */
  private countedTotal = 0;

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
   * `answer`'s value, or undefined when it is not had by `deadline` (epoch
   * ms); it is then counted against `key` (and, when `counted`, the total)
   * until it settles. A rejection before the deadline is thrown.
   */
  async within<T>(key: string, answer: Promise<T>, deadline: number, counted = true): Promise<T | undefined> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), Math.max(0, deadline - Date.now()));
    });
    let answered = false;
    try {
      const value = await Promise.race([answer.finally(() => (answered = true)), late]);
      if (answered) return value;
    } finally {
      clearTimeout(timer);
    }
    this.byKey.set(key, (this.byKey.get(key) ?? 0) + 1);
    if (counted) this.countedTotal++;
    const settled = (): void => {
      const left = (this.byKey.get(key) ?? 1) - 1;
      if (left > 0) this.byKey.set(key, left);
      else this.byKey.delete(key);
      if (counted) this.countedTotal--;
    };
    answer.then(settled, settled);
    return undefined;
  }
}
