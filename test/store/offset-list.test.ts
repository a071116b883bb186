import { describe, expect, it } from "vitest";
import { OffsetList } from "../../src/store/fs/offset-list.js";

describe("offset list", () => {
  it("packs offsets 4 bytes each and keeps them through growth", () => {
    const list = new OffsetList(2);
    for (let i = 0; i < 1000; i++) list.push(i * 37);
    expect(list.length).toBe(1000);
    expect(list.slice(998, 1005)).toEqual([998 * 37, 999 * 37]);
    expect(list.slice(0, 3)).toEqual([0, 37, 74]);
    expect(list.view()).toBeInstanceOf(Uint32Array);
    expect(list.view().length).toBe(1000);
    expect(list.view().buffer.byteLength).toBeLessThanOrEqual(2 * 1000 * 4);
    expect(OffsetList.from([5, 6, 7]).slice(1, 3)).toEqual([6, 7]);
    // Large offsets (segments up to 4 GiB) are not truncated.
    const big = new OffsetList();
    big.push(0xfffffff0);
    expect(big.slice(0, 1)).toEqual([0xfffffff0]);
  });
});
