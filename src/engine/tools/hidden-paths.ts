import { lstatSync, realpathSync } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";

/** A private path (ShellSandboxOptions.hiddenPaths) that cannot be kept covered; stops start-up. */
export class HiddenPathError extends Error {
  override readonly name = "HiddenPathError";
}

/**
 * The operator's private paths as the backend keeps them: each path as
 * named, and where it really is at start-up. Both the sandbox
 * (shell-sandbox.ts) and the file tools (workspace.ts) resolve every one of
 * them again when a run or command starts, so the named path follows a
 * link the operator swaps (a rotated Kubernetes secret), and the start-up
 * location stays covered when a link on the way is deleted or changed — a
 * link inside a worker's workspace is the worker's to delete, and deleting
 * it uncovered its target before. A path that does not exist yet (the data
 * directory, made later) is located under its nearest existing parent.
 *
 * Refuses, with a {@link HiddenPathError}, what cannot be covered: a path
 * that is "/", one that leads through a symlink whose target is missing
 * (where it will be cannot be known) or through a symlink loop.
 * Synchronous: it runs once, at start-up.
 */
export function pinHiddenPaths(paths: readonly string[]): string[] {
  const pinned = new Set<string>();
  for (const path of paths) {
    const absolute = resolve(path);
    const located = locate(absolute);
    if (absolute === "/" || located === "/") throw new HiddenPathError(`cannot keep ${path} private: it is the root directory`);
    pinned.add(absolute);
    pinned.add(located);
  }
  return [...pinned];
}

/** Where `path` (absolute) really is: its real path, or its nearest existing parent's real path plus the rest. */
function locate(path: string): string {
  const rest: string[] = [];
  let current = path;
  for (;;) {
    try {
      return join(realpathSync(current), ...rest);
    } catch (error) {
      const code = error instanceof Error && "code" in error ? String(error.code) : "";
      // Where this process may not look, neither may its sandboxed commands (same user): the named path is enough.
      if (code === "EACCES" || code === "EPERM") return path;
      if (code !== "ENOENT" && code !== "ENOTDIR")
        throw new HiddenPathError(`cannot keep ${path} private: cannot resolve it (${code || "error"})`);
      if (exists(current)) {
        throw new HiddenPathError(`cannot keep ${path} private: ${current} is a symlink whose target does not exist; name the real path`);
      }
      rest.unshift(basename(current));
      current = dirname(current);
    }
  }
}

function exists(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}
