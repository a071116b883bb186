import { lstat, mkdir, mkdtemp, realpath, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { HiddenPathError, type HiddenPathFs, pinHiddenPaths } from "../../src/engine/tools/hidden-paths.js";
import { UnansweredLookups } from "../../src/runtime/index.js";

/**
 * The operator's private paths are located at start-up off the event loop,
 * each within the host-path deadline: a hung network mount among them
 * refuses start-up, naming the path, instead of holding the process.
 */

let base: string;

beforeEach(async () => {
  base = await realpath(await mkdtemp(join(tmpdir(), "hidden-paths-")));
});

afterEach(async () => {
  await rm(base, { recursive: true, force: true });
});

/** The real fs.promises, except that realpath and lstat under `hung` never answer. */
function hangingFs(hung: string): HiddenPathFs {
  const under = (path: string): boolean => path === hung || path.startsWith(`${hung}/`);
  return {
    realpath: (path) => (under(path) ? new Promise(() => {}) : realpath(path)),
    lstat: (path) => (under(path) ? new Promise(() => {}) : lstat(path)),
  };
}

describe("pinHiddenPaths", () => {
  it("keeps each path as named and where it really is, and a path not there yet under its nearest parent", async () => {
    await mkdir(join(base, "real"));
    await symlink(join(base, "real"), join(base, "link"));
    const pinned = await pinHiddenPaths([join(base, "link", "token"), join(base, "data", "not-yet")], {
      lookups: new UnansweredLookups(),
      timeoutMs: 5_000,
    });
    expect(pinned).toEqual([join(base, "link", "token"), join(base, "real", "token"), join(base, "data", "not-yet")]);
  });

  it("refuses, naming the path, one whose file system does not answer in time", async () => {
    await mkdir(join(base, "mount"));
    const lookups = new UnansweredLookups();
    const pinning = pinHiddenPaths([join(base, "fine"), join(base, "mount", "token")], {
      lookups,
      timeoutMs: 50,
      fs: hangingFs(join(base, "mount")),
    });
    await expect(pinning).rejects.toThrow(
      new HiddenPathError(`cannot keep ${join(base, "mount", "token")} private: its file system did not answer within 50 ms`),
    );
    expect(lookups.isUnanswered(join(base, "mount", "token"))).toBe(true);
  });

  it("locates again a directory made while it was being located, rather than calling it a dangling link", async () => {
    await mkdir(join(base, "state"));
    let first = true;
    // The first realpath of state/ misses it (it was being made), as a store making its data directory at start-up.
    const fs: HiddenPathFs = {
      realpath: (path) => {
        if (path === join(base, "state") && first) {
          first = false;
          return Promise.reject(Object.assign(new Error("ENOENT"), { code: "ENOENT" }));
        }
        return realpath(path);
      },
      lstat,
    };
    const pinned = await pinHiddenPaths([join(base, "state", "data")], { lookups: new UnansweredLookups(), timeoutMs: 5_000, fs });
    expect(pinned).toEqual([join(base, "state", "data")]);
  });

  it("still refuses what cannot be covered: a link to nowhere, the root directory", async () => {
    await symlink(join(base, "missing"), join(base, "token"));
    const options = { lookups: new UnansweredLookups(), timeoutMs: 5_000 };
    await expect(pinHiddenPaths([join(base, "token")], options)).rejects.toThrow(
      new HiddenPathError(
        `cannot keep ${join(base, "token")} private: ${join(base, "token")} is a symlink whose target does not exist; name the real path`,
      ),
    );
    await symlink("/", join(base, "root"));
    await expect(pinHiddenPaths([join(base, "root")], options)).rejects.toThrow(/it is the root directory/);
  });
});
