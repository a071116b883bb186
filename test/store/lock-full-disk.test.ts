import { spawnSync } from "node:child_process";
import { readdir, readFile, utimes, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createFileStore, type FileStoreFaults } from "../../src/store/fs/index.js";
import { tempDataDir } from "./fs-support.js";

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => ({ dir, cleanup } = await tempDataDir()));
afterEach(async () => cleanup());

const openInit = { generateRuntimeId: () => "rt-lock" };
const full: FileStoreFaults = {
  beforeWrite: () => {
    throw Object.assign(new Error("no space left on device"), { code: "ENOSPC" });
  },
};

/** A data dir as `kill -9` leaves it: LOCK names a process that no longer runs. */
async function killedHolder(): Promise<string> {
  const first = createFileStore({ dataDir: dir });
  await first.open(openInit);
  await first.close();
  const gone = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" });
  const lock = JSON.stringify({ pid: Number(gone.stdout) });
  await writeFile(path.join(dir, "LOCK"), lock);
  return lock;
}

/**
 * The audit of store22: `serve` on a full disk after kill -9 exited 1 with
 * only "ENOSPC: no space left on device, write" (no file, no data dir) and
 * left an empty LOCK.tmp-* behind for ever. Taking the lock writes its
 * holder's identity, so a disk without even that much space is refused,
 * but in words an operator can act on, and nothing is left behind.
 */
describe("the data dir lock on a full disk", () => {
  it("is refused with a message naming the data dir and the full disk, and leaves no temp file", async () => {
    const lock = await killedHolder();
    const refused = createFileStore({ dataDir: dir, faults: full }).open(openInit);
    await expect(refused).rejects.toThrow(
      `the data dir ${dir} has no space left (ENOSPC): its lock file (LOCK, a few hundred bytes) cannot be written; free space on its disk and start again`,
    );
    expect((await readdir(dir)).filter((name) => name.startsWith("LOCK.tmp-"))).toEqual([]);
    // The dead holder's lock is left as it was: the next start takes it over.
    expect(await readFile(path.join(dir, "LOCK"), "utf8")).toBe(lock);
    const again = createFileStore({ dataDir: dir });
    await expect(again.open(openInit)).resolves.toMatchObject({ runtimeId: "rt-lock" });
    await again.close();
  });

  it("sweeps at open a LOCK.tmp-* an earlier attempt left, but not one another process is writing now", async () => {
    await killedHolder();
    const old = path.join(dir, "LOCK.tmp-0123abcd");
    await writeFile(old, "");
    const hourAgo = new Date(Date.now() - 3_600_000);
    await utimes(old, hourAgo, hourAgo);
    await writeFile(path.join(dir, "LOCK.tmp-fedcba98"), "");
    const store = createFileStore({ dataDir: dir });
    await store.open(openInit);
    expect((await readdir(dir)).filter((name) => name.startsWith("LOCK.tmp-"))).toEqual(["LOCK.tmp-fedcba98"]);
    await store.close();
  });
});
