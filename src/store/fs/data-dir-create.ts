import { mkdir, stat } from "node:fs/promises";
import path from "node:path";
import { DataDirNotWritableError, notDirectory, notWritable } from "./data-dir-errors.js";
import { errorCode } from "./disk.js";

/**
 * `mkdir -p` of the data dir (`root`, absolute): the topmost directory it
 * made, or undefined when the data dir was there already, as Node's
 * recursive mkdir answers. Node's own spins for ever, with no output, where
 * mkdir answers ENOENT although the parent exists (procfs, sysfs, some
 * FUSE mounts); this one walks up once, comes back down once, and names
 * the data dir in every failure.
 */
export async function createDataDir(root: string): Promise<string | undefined> {
  const missing: string[] = [];
  let topmost: string | undefined;
  for (let dir = root; ; ) {
    const made = await makeOne(root, dir);
    if (made === "made") topmost = dir;
    if (made !== "no parent") break;
    const parent = path.dirname(dir);
    if (parent === dir) throw cannotCreate(root, dir);
    missing.push(dir);
    dir = parent;
  }
  for (const below of missing.reverse()) {
    const made = await makeOne(root, below);
    // Its parent exists now: ENOENT here is the file system's own refusal, not a missing parent.
    if (made === "no parent") throw cannotCreate(root, below);
    if (made === "made") topmost ??= below;
  }
  return topmost;
}

/** One mkdir: made, there already (as a directory), or its parent missing; anything else is the data dir's typed error. */
async function makeOne(root: string, dir: string): Promise<"made" | "exists" | "no parent"> {
  try {
    await mkdir(dir);
    return "made";
  } catch (error) {
    const code = errorCode(error);
    if (code === "ENOENT") return "no parent";
    if (code === "EEXIST" && (await isDirectory(dir))) return "exists";
    throw notWritable(root, notDirectory(root, error), "it cannot be created");
  }
}

async function isDirectory(dir: string): Promise<boolean> {
  return (await stat(dir).catch(() => undefined))?.isDirectory() ?? false;
}

function cannotCreate(root: string, dir: string): DataDirNotWritableError {
  return new DataDirNotWritableError(
    `the data dir ${root} cannot be created: the file system refuses a directory at ${dir} (ENOENT although its parent exists); give a data dir on a disk`,
  );
}
