import { spawnSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import * as root from "../../src/index.js";
import { createFileStore, DataDirInUseError, DataDirNotDirectoryError } from "../../src/store/fs/index.js";

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

  it("the root entry exports them too", () => {
    expect(DataDirInUseError).toBeTypeOf("function");
    expect(root.DataDirInUseError).toBe(DataDirInUseError);
    expect(root.DataDirNotDirectoryError).toBe(DataDirNotDirectoryError);
  });
});
