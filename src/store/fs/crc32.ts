import * as zlib from "node:zlib";

/** Signature of a CRC-32 (IEEE) function that can continue a running checksum. */
type Crc32 = (data: Uint8Array, value?: number) => number;

/**
 * CRC-32 (IEEE, the zlib/PNG polynomial) for log records and snapshots.
 * Node ≥ 20.15 ships `zlib.crc32` (native, GB/s); older Node 20 releases fall
 * back to a table-driven implementation so the store never depends on a
 * point release for correctness.
 */
export const crc32: Crc32 = typeof zlib.crc32 === "function" ? nativeCrc32 : tableCrc32;

function nativeCrc32(data: Uint8Array, value = 0): number {
  return zlib.crc32(data, value);
}

const TABLE = buildTable();

function buildTable(): Uint32Array {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
}

/** Exported for tests that check both implementations agree. */
export function tableCrc32(data: Uint8Array, value = 0): number {
  let crc = (value ^ 0xffffffff) >>> 0;
  for (let i = 0; i < data.length; i++) {
    crc = (TABLE[(crc ^ (data[i] ?? 0)) & 0xff] ?? 0) ^ (crc >>> 8);
  }
  return (crc ^ 0xffffffff) >>> 0;
}
