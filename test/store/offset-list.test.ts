import { describe, expect, it } from "vitest";
import { OffsetList } from "../../src/store/fs/offset-list.js";

describe("offset list", () => {
  it("packs long lists 4 bytes per offset and keeps them through growth", () => {
    const list = new OffsetList();
    for (let i = 0; i < 100_000; i++) list.push(i * 37);
    expect(list.length).toBe(100_000);
    expect(list.slice(99_998, 100_005)).toEqual([99_998 * 37, 99_999 * 37]);
    expect(list.slice(0, 3)).toEqual([0, 37, 74]);
    expect(list.capacityBytes).toBeLessThanOrEqual(2 * 100_000 * 4);
    expect(Array.from(list.view()).slice(250, 260)).toEqual(Array.from({ length: 10 }, (_, i) => (250 + i) * 37));
    // Large offsets (segments up to 4 GiB) are not truncated.
    const big = OffsetList.from(Array.from({ length: 300 }, () => 0xfffffff0));
    expect(big.slice(299, 300)).toEqual([0xfffffff0]);
  });

  it("keeps short lists small", () => {
    const list = OffsetList.from([5, 6, 7]);
    list.push(8);
    expect(list.slice(1, 10)).toEqual([6, 7, 8]);
    expect(list.capacityBytes).toBeLessThan(100);
  });
});
