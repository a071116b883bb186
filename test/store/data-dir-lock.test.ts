import { spawnSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createFileStore } from "../../src/store/fs/index.js";

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "wr-lock-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const openInit = { generateRuntimeId: () => "rt-lock" };

describe("the data dir lock", () => {
  it("refuses a second store on the same data dir until the first closes", async () => {
    const first = createFileStore({ dataDir: dir });
    await first.open(openInit);
    const second = createFileStore({ dataDir: dir });
    await expect(second.open(openInit)).rejects.toThrow(/already open in this process/);
    await first.close();
    const third = createFileStore({ dataDir: dir });
    await expect(third.open(openInit)).resolves.toMatchObject({ runtimeId: "rt-lock" });
    await third.close();
  });

  it("refuses while another live process holds it", async () => {
    const other = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.ppid))"], { encoding: "utf8" });
    const livePid = Number(other.stdout);
    expect(livePid).toBeGreaterThan(0);
    await writeFile(path.join(dir, "LOCK"), JSON.stringify({ pid: livePid === process.pid ? 1 : livePid }));
    await expect(createFileStore({ dataDir: dir }).open(openInit)).rejects.toThrow(/in use by another runtime process/);
  });

  it("takes over a lock left by a process that no longer runs", async () => {
    const gone = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" });
    await writeFile(path.join(dir, "LOCK"), JSON.stringify({ pid: Number(gone.stdout) }));
    const store = createFileStore({ dataDir: dir });
    await expect(store.open(openInit)).resolves.toMatchObject({ runtimeId: "rt-lock" });
    await store.close();
  });
});
