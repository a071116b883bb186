/**
 * Protobuf varints for the byte lengths the core writes by hand (delta
 * events in event-encoding.ts, batch frames in wire-batch.ts) and counts
 * (response budgets in message-budget.ts). Lengths only: non-negative
 * integers below 2^32.
 */

/** Bytes the varint of `value` takes. */
export function varintSize(value: number): number {
  let size = 1;
  for (let n = value; n >= 0x80; n >>>= 7) size++;
  return size;
}

/** Writes `value` as a varint at `pos`; returns the position after it. */
export function writeVarint(out: Uint8Array, pos: number, value: number): number {
  let n = value;
  let at = pos;
  while (n >= 0x80) {
    out[at++] = (n & 0x7f) | 0x80;
    n >>>= 7;
  }
  out[at++] = n;
  return at;
}
