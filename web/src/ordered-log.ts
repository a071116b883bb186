/**
 * The chat's DOM kept in key order: committed entries by transcript seq, a
 * run's "stopped" mark just after its last entry (seq + 0.5), in-flight
 * blocks after everything. Entries arrive from history pages (older, at the
 * top) and from the watch (newer, at the bottom) in any interleaving; a key
 * seen twice replaces its element, so nothing is ever shown twice.
 */
export class OrderedLog {
  private readonly keys: number[] = [];
  private readonly elements = new Map<number, HTMLElement>();

  constructor(readonly root: HTMLElement) {}

  /** How many elements (entries and marks) are held. */
  get size(): number {
    return this.keys.length;
  }

  has(key: number): boolean {
    return this.elements.has(key);
  }

  get(key: number): HTMLElement | undefined {
    return this.elements.get(key);
  }

  /** The smallest key held, or undefined when empty. */
  first(): number | undefined {
    return this.keys[0];
  }

  /** The largest key held, or undefined when empty. */
  last(): number | undefined {
    return this.keys.at(-1);
  }

  put(key: number, element: HTMLElement): void {
    const old = this.elements.get(key);
    if (old) {
      old.replaceWith(element);
      this.elements.set(key, element);
      return;
    }
    let low = 0;
    let high = this.keys.length;
    while (low < high) {
      const mid = (low + high) >> 1;
      if ((this.keys[mid] ?? 0) < key) low = mid + 1;
      else high = mid;
    }
    const next = this.keys[low];
    this.root.insertBefore(element, next === undefined ? null : (this.elements.get(next) ?? null));
    this.keys.splice(low, 0, key);
    this.elements.set(key, element);
  }

  /** Empties the log: what it showed is stale (the watch re-synced from a fresh snapshot). */
  clear(): void {
    for (const element of this.elements.values()) element.remove();
    this.elements.clear();
    this.keys.length = 0;
  }

  /**
   * Drops the elements with the smallest keys until at most `max` are left,
   * and an entry's marks with it (keys of one seq leave together): a run's
   * "stopped" mark left first on the page without its entry stood above
   * another run's entry, and the older page was then read before the mark's
   * seq, so its entry never came back. Returns how many it dropped.
   */
  dropOldest(max: number): number {
    let drop = Math.max(0, this.keys.length - max);
    const edge = this.keys[drop - 1];
    if (edge !== undefined) while (drop < this.keys.length && Math.floor(this.keys[drop] ?? 0) === Math.floor(edge)) drop++;
    const dropped = this.keys.splice(0, drop);
    for (const key of dropped) {
      this.elements.get(key)?.remove();
      this.elements.delete(key);
    }
    return dropped.length;
  }

  /**
   * Drops the elements with the largest keys until at most `max` are left,
   * and an entry's marks never without it (keys of one seq leave together):
   * a run's last entry left on the page without its "stopped" mark would
   * read as unanswered. Returns how many it dropped.
   */
  dropNewest(max: number): number {
    let keep = Math.min(max, this.keys.length);
    const cut = this.keys[keep];
    if (cut !== undefined) while (keep > 0 && Math.floor(this.keys[keep - 1] ?? 0) === Math.floor(cut)) keep--;
    const dropped = this.keys.splice(keep);
    for (const key of dropped) {
      this.elements.get(key)?.remove();
      this.elements.delete(key);
    }
    return dropped.length;
  }

  remove(key: number): void {
    const element = this.elements.get(key);
    if (!element) return;
    element.remove();
    this.elements.delete(key);
    this.keys.splice(this.keys.indexOf(key), 1);
  }
}
