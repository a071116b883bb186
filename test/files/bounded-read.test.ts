import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type BoundedRead, readBounded, readBoundedSync } from "../../src/files/index.js";

/** Both forms of the bounded read share one loop: each gives the same answer for each kind of file. */
describe.each([
  ["readBoundedSync", async (path: string, maxBytes: number): Promise<BoundedRead> => readBoundedSync(path, maxBytes)],
  ["readBounded", readBounded],
])("%s", (_name, read) => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "bounded-read-"));
    await writeFile(join(dir, "empty"), "");
    await writeFile(join(dir, "ten"), "0123456789");
    await writeFile(join(dir, "big"), Buffer.alloc(200_000, 7));
    await mkdir(join(dir, "sub"));
    execFileSync("mkfifo", [join(dir, "pipe")]);
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("reads a file within the bound whole, at the bound too", async () => {
    for (const bound of [10, 11, 1000]) {
      const result = await read(join(dir, "ten"), bound);
      expect(result.kind === "read" && result.bytes.toString()).toBe("0123456789");
    }
    const empty = await read(join(dir, "empty"), 10);
    expect(empty.kind === "read" && empty.bytes.length).toBe(0);
    const big = await read(join(dir, "big"), 200_000);
    expect(big.kind === "read" && big.bytes.equals(Buffer.alloc(200_000, 7))).toBe(true);
  });

  it("refuses a file past the bound by its size, a FIFO and a directory as not regular, without reading them", async () => {
    expect(await read(join(dir, "ten"), 9)).toMatchObject({ kind: "too-large", size: 10, grew: false });
    expect(await read(join(dir, "pipe"), 10)).toMatchObject({ kind: "not-regular" });
    expect(await read(join(dir, "sub"), 10)).toMatchObject({ kind: "not-regular" });
  });
});
