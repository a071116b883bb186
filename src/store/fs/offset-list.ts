/** Lists up to this long stay a plain array: a typed array's fixed overhead outweighs packing. */
const PACK_AT = 256;

/**
 * The record start offsets of an active segment. Every open log keeps one
 * for the life of the process. Short lists (most logs of a store with many
 * workers) are plain arrays; past {@link PACK_AT} entries they move to a
 * Uint32Array, 4 bytes per record, that doubles as it fills, where a
 * number[] would cost 8+ bytes per record plus slack (segments are at most
 * 4 GiB, so u32 is enough).
 */
export class OffsetList {
  private small: number[] | undefined = [];
  private packed = new Uint32Array(0);
  private size = 0;

  /** A list holding a copy of `offsets`. */
  static from(offsets: ArrayLike<number>): OffsetList {
    const list = new OffsetList();
    if (offsets.length < PACK_AT) {
      list.small = Array.from(offsets);
    } else {
      list.small = undefined;
      list.packed = Uint32Array.from(offsets);
    }
    list.size = offsets.length;
    return list;
  }

  get length(): number {
    return this.size;
  }

  push(offset: number): void {
    if (this.small) {
      this.small.push(offset);
      this.size++;
      if (this.size >= PACK_AT) {
        this.packed = Uint32Array.from(this.small);
        this.small = undefined;
      }
      return;
    }
    if (this.size === this.packed.length) {
      const grown = new Uint32Array(this.packed.length * 2);
      grown.set(this.packed);
      this.packed = grown;
    }
    this.packed[this.size++] = offset;
  }

  /** Offsets [from, to) (clipped to the list) as numbers. */
  slice(from: number, to: number): number[] {
    const start = Math.min(from, this.size);
    const end = Math.min(to, this.size);
    return this.small ? this.small.slice(start, end) : Array.from(this.packed.subarray(start, end));
  }

  /** The offsets, without copying when packed; valid until the next push. */
  view(): ArrayLike<number> {
    return this.small ?? this.packed.subarray(0, this.size);
  }

  /** Bytes held for offsets (for tests and benches). */
  get capacityBytes(): number {
    return this.small ? this.small.length * 8 : this.packed.byteLength;
  }
}
