import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import * as root from "../../src/index.js";
import { nobodyCanRunNode, openAsNobody } from "./open-as-nobody.js";
import { createFileStore, DataDirInUseError, DataDirNotDirectoryError, DataDirNotWritableError } from "../../src/store/fs/index.js";

/**
 * The data-dir errors an embedder can switch on by class, not by message.
 * Found by an audit embedding the Runtime: a data dir already open (here or
 * in another process) was a plain Error, and createFileStore on a regular
 * file failed with mkdir's raw EEXIST.
 */

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "wr-dir-errors-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const openInit = { generateRuntimeId: () => "rt-errors" };

async function openFailure(dataDir: string): Promise<unknown> {
  return createFileStore({ dataDir })
    .open(openInit)
    .then(
      () => new Error("expected open to fail"),
      (error: unknown) => error,
    );
}

describe("data dir errors", () => {
  it("a data dir already open in this process is a DataDirInUseError", async () => {
    const first = createFileStore({ dataDir: dir });
    await first.open(openInit);
    try {
      const error = await openFailure(dir);
      expect(error).toBeInstanceOf(DataDirInUseError);
      expect((error as Error).name).toBe("DataDirInUseError");
      expect((error as Error).message).toMatch(/already open in this process/);
    } finally {
      await first.close();
    }
  });

  it("a data dir held by another live process is a DataDirInUseError", async () => {
    const other = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.ppid))"], { encoding: "utf8" });
    const livePid = Number(other.stdout);
    await writeFile(path.join(dir, "LOCK"), JSON.stringify({ pid: livePid === process.pid ? 1 : livePid }));
    const error = await openFailure(dir);
    expect(error).toBeInstanceOf(DataDirInUseError);
    expect((error as Error).message).toMatch(/in use by another runtime process/);
  });

  it("a data dir that is a regular file, or lies under one, is a DataDirNotDirectoryError keeping the cause", async () => {
    const file = path.join(dir, "a-file");
    await writeFile(file, "not a directory");
    for (const dataDir of [file, path.join(file, "below")]) {
      const error = await openFailure(dataDir);
      expect(error, dataDir).toBeInstanceOf(DataDirNotDirectoryError);
      expect((error as Error).name).toBe("DataDirNotDirectoryError");
      expect((error as Error).message).toContain("not a directory");
      expect((error as Error).cause).toHaveProperty("code");
    }
  });

  it("creates every missing directory of a deep data dir", async () => {
    const dataDir = path.join(dir, "a", "b", "c");
    const store = createFileStore({ dataDir });
    await store.open(openInit);
    await store.close();
    expect((await stat(dataDir)).isDirectory()).toBe(true);
  });

  // Node's recursive mkdir spins for ever on this (mkdir answers ENOENT under /proc although /proc exists): the
  // process hung at start-up, printing nothing.
  it.runIf(existsSync("/proc/self"))("a data dir on a file system that takes no directories is refused, not a hang", async () => {
    for (const dataDir of ["/proc/wr-data-dir", "/proc/wr-data-dir/below"]) {
      const error = await Promise.race([openFailure(dataDir), sleep(5_000).then(() => new Error("open still pending after 5 s"))]);
      expect(error, dataDir).toBeInstanceOf(DataDirNotWritableError);
      expect((error as Error).message).toBe(
        `the data dir ${dataDir} cannot be created: the file system refuses a directory at /proc/wr-data-dir (ENOENT although its parent exists); give a data dir on a disk`,
      );
    }
  });

  it.runIf(nobodyCanRunNode())("a data dir the process may not create is a DataDirNotWritableError naming it", async () => {
    // Owned by root, mode 0755: the child, run as nobody, may not make a directory in it.
    const dataDir = path.join(dir, "sub", "data");
    expect(openAsNobody(dataDir)).toBe(
      `refused DataDirNotWritableError: the data dir ${dataDir} cannot be written (EACCES); the file store needs a writable data dir: check its owner, mode and mount`,
    );
  });

  it("the root entry exports them too", () => {
    expect(DataDirInUseError).toBeTypeOf("function");
    expect(root.DataDirInUseError).toBe(DataDirInUseError);
    expect(root.DataDirNotDirectoryError).toBe(DataDirNotDirectoryError);
    expect(root.DataDirNotWritableError).toBe(DataDirNotWritableError);
  });
});
