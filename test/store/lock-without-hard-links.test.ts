import { spawn } from "node:child_process";
import { readdir, readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createFileStore, DataDirInUseError, type FileStoreFaults } from "../../src/store/fs/index.js";
import { tempDataDir } from "./fs-support.js";
import { refuseLink } from "./no-hard-links.js";

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => ({ dir, cleanup } = await tempDataDir()));
afterEach(async () => cleanup());

const openInit = { generateRuntimeId: () => "rt-no-links" };
const noLinks: FileStoreFaults = { beforeLink: refuseLink };
const childScript = path.join(path.dirname(fileURLToPath(import.meta.url)), "lock-child.ts");

/** The names in the data dir that belong to the lock. */
async function lockFiles(): Promise<string[]> {
  return (await readdir(dir)).filter((name) => name.startsWith("LOCK")).sort();
}

/**
 * The data dir on a file system without hard links (FAT, exFAT, some
 * network and FUSE mounts): the lock cannot appear complete in one step,
 * so it is created and then written.
 */
describe("the data dir lock without hard links", () => {
  it("is taken, names its holder, keeps another process out, and goes on close", async () => {
    const store = createFileStore({ dataDir: dir, faults: noLinks });
    await store.open(openInit);
    expect(JSON.parse(await readFile(path.join(dir, "LOCK"), "utf8"))).toMatchObject({ pid: process.pid });
    expect(await lockFiles()).toEqual(["LOCK", "LOCK.sock"]);
    const other = spawn(process.execPath, ["--import", "tsx", childScript, dir, "0", "0"], { stdio: ["ignore", "pipe", "inherit"] });
    let out = "";
    other.stdout.on("data", (chunk: Buffer) => (out += chunk.toString()));
    await new Promise((resolve) => other.once("exit", resolve));
    expect(out).toMatch(/^refused the data dir is in use by another runtime process/);
    await store.close();
    expect(await lockFiles()).toEqual([]);
  }, 30_000);

  it("on a full disk is refused in words naming the data dir, and leaves no lock behind", async () => {
    const full: FileStoreFaults = {
      ...noLinks,
      beforeWrite: (file) => {
        if (file === "LOCK") throw Object.assign(new Error("no space left on device"), { code: "ENOSPC" });
      },
    };
    await expect(createFileStore({ dataDir: dir, faults: full }).open(openInit)).rejects.toThrow(
      `the data dir ${dir} has no space left (ENOSPC): its lock file (LOCK, a few hundred bytes) cannot be written; free space on its disk and start again`,
    );
    // An empty LOCK left would have cost the next start a wait, and looked held.
    expect(await lockFiles()).toEqual([]);
  });

  it("does not take for stale an empty lock another process has just created and is writing", async () => {
    await writeFile(path.join(dir, "LOCK"), "");
    const opening = createFileStore({ dataDir: dir }).open(openInit);
    // The other process (here this one's parent, which runs all along) writes its holder a moment later.
    await new Promise((resolve) => setTimeout(resolve, 300));
    await writeFile(path.join(dir, "LOCK"), JSON.stringify({ pid: process.ppid }));
    await expect(opening).rejects.toBeInstanceOf(DataDirInUseError);
  });

  it("takes over an empty lock that stays empty (its process died between creating and writing it)", async () => {
    await writeFile(path.join(dir, "LOCK"), "");
    const store = createFileStore({ dataDir: dir });
    await expect(store.open(openInit)).resolves.toMatchObject({ runtimeId: "rt-no-links" });
    expect(JSON.parse(await readFile(path.join(dir, "LOCK"), "utf8"))).toMatchObject({ pid: process.pid });
    await store.close();
  });
});
