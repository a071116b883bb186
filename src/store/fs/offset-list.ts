/**
 * The record start offsets of an active segment, packed 4 bytes each in a
 * Uint32Array that doubles as it fills. A plain number[] costs 8+ bytes per
 * record plus its own slack, and every open log keeps one for the life of
 * the process (segments are at most 4 GiB, so u32 is enough).
 */
export class OffsetList {
  private data: Uint32Array;
  private size = 0;

  constructor(initialCapacity = 16) {
    this.data = new Uint32Array(Math.max(1, initialCapacity));
  }

  /** A list holding a copy of `offsets`. */
  static from(offsets: ArrayLike<number>): OffsetList {
    const list = new OffsetList(offsets.length);
    list.data.set(offsets);
    list.size = offsets.length;
    return list;
  }

  get length(): number {
    return this.size;
  }

  push(offset: number): void {
    if (this.size === this.data.length) {
      const grown = new Uint32Array(this.data.length * 2);
      grown.set(this.data);
      this.data = grown;
    }
    this.data[this.size++] = offset;
  }

  /** Offsets [from, to) (clipped to the list) as numbers. */
  slice(from: number, to: number): number[] {
    return Array.from(this.data.subarray(Math.min(from, this.size), Math.min(to, this.size)));
  }

  /** A view of the offsets (no copy); valid until the next push. */
  view(): Uint32Array {
    return this.data.subarray(0, this.size);
  }
}
