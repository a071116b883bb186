import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import * as root from "../../src/index.js";
import { StoreWriteError } from "../../src/runtime/index.js";
import { createFileStore, DataDirFormatError } from "../../src/store/fs/index.js";

/**
 * The data dir says its format, so that a build refuses one a newer build
 * wrote in a format it does not know (going back after an upgrade) instead
 * of misreading it; one without the file is an older build's and is read.
 */
let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "wr-format-"));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

const openInit = { generateRuntimeId: () => "rt-format" };

async function openAndClose(): Promise<void> {
  const store = createFileStore({ dataDir: dir });
  await store.open(openInit);
  await store.close();
}

async function openFailure(): Promise<unknown> {
  return createFileStore({ dataDir: dir })
    .open(openInit)
    .then(
      () => new Error("expected open to fail"),
      (error: unknown) => error,
    );
}

describe("the data dir's format", () => {
  it("is written into a new data dir, and the data dir opens again with it", async () => {
    await openAndClose();
    expect(await readFile(path.join(dir, "FORMAT"), "utf8")).toBe("worker-runtime data dir format 1\n");
    await openAndClose();
  });

  it("refuses a data dir in a newer format before reading or writing anything in it, and releases it", async () => {
    await writeFile(path.join(dir, "FORMAT"), "worker-runtime data dir format 2\n");
    const error = await openFailure();
    expect(error).toBeInstanceOf(DataDirFormatError);
    expect((error as Error).message).toBe(
      `the data dir ${dir} is in format 2, written by a newer worker-runtime; this build reads formats up to 1. ` +
        "Run that newer build (going back to an older one after an upgrade is not supported)",
    );
    // No runtime.snapshot, no log directories: the newer build finds its data dir as it left it.
    expect((await readdir(dir)).filter((name) => !name.startsWith("LOCK"))).toEqual(["FORMAT"]);
    await writeFile(path.join(dir, "FORMAT"), "worker-runtime data dir format 1\n");
    await openAndClose();
  });

  it("refuses a damaged FORMAT file, saying what it should hold", async () => {
    for (const content of [
      "",
      "format 1\n",
      "worker-runtime data dir format one\n",
      `worker-runtime data dir format 1\n${"x".repeat(300)}`,
    ]) {
      await writeFile(path.join(dir, "FORMAT"), content);
      const error = await openFailure();
      expect(error, JSON.stringify(content.slice(0, 40))).toBeInstanceOf(DataDirFormatError);
      expect((error as Error).message).toContain(`FORMAT in the data dir ${dir} is damaged`);
    }
  });

  it("names the data dir when a full disk refuses the FORMAT file", async () => {
    const faults = {
      beforeWrite: (file: string) => {
        if (file.startsWith("FORMAT")) throw Object.assign(new Error("fault: ENOSPC"), { code: "ENOSPC" });
      },
    };
    const error = await createFileStore({ dataDir: dir, faults })
      .open(openInit)
      .then(
        () => new Error("expected open to fail"),
        (failure: unknown) => failure,
      );
    expect(error).toBeInstanceOf(StoreWriteError);
    expect((error as Error).message).toBe(
      `the data dir ${dir} has no space left (ENOSPC): its FORMAT file (a few dozen bytes) cannot be written; free space on its disk and start again`,
    );
    // Nothing half-written left behind, and the lock released: the next open (with room) succeeds.
    expect((await readdir(dir)).filter((name) => name.startsWith("FORMAT"))).toEqual([]);
    await openAndClose();
  });

  it("is exported from the root entry too", () => {
    expect(root.DataDirFormatError).toBe(DataDirFormatError);
  });
});
