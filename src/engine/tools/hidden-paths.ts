import { promises } from "node:fs";
import { basename, dirname, join, resolve } from "node:path";
import type { UnansweredLookups } from "../../runtime/index.js";

/** A private path (ShellSandboxOptions.hiddenPaths) that cannot be kept covered; stops start-up. */
export class HiddenPathError extends Error {
  override readonly name = "HiddenPathError";
}

/** The file system calls {@link pinHiddenPaths} makes (node:fs promises; a test may give a slower one). */
export interface HiddenPathFs {
  realpath(path: string): Promise<string>;
  lstat(path: string): Promise<{ isSymbolicLink(): boolean }>;
}

/** How often a path made while it was being located (the data directory, say) is located again before it counts as missing. */
const MADE_MEANWHILE_RETRIES = 3;

/**
 * How {@link pinHiddenPaths} asks the host's file system: off the event
 * loop, each call within `timeoutMs` (limits.hostPathTimeoutMs), through
 * the backend's `lookups` (unanswered-lookups.ts), so a hung network mount
 * among the private paths refuses start-up, naming it, instead of holding
 * the process before it serves anything.
 */
export interface HiddenPathLookups {
  lookups: UnansweredLookups;
  timeoutMs: number;
  fs?: HiddenPathFs;
}

/**
 * Refuses, with a {@link HiddenPathError}, a private path named "/": known
 * from the name alone, so the backend refuses it as it is made; where each
 * path leads is asked later ({@link pinHiddenPaths}).
 */
export function checkHiddenPathNames(paths: readonly string[]): void {
  for (const path of paths) {
    if (resolve(path) === "/") throw new HiddenPathError(`cannot keep ${path} private: it is the root directory`);
  }
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
 * (where it will be cannot be known) or through a symlink loop, and one
 * whose file system does not answer in time. Runs once, at start-up
 * (ExecutionBackend.ready).
 */
export async function pinHiddenPaths(paths: readonly string[], asking: HiddenPathLookups): Promise<string[]> {
  const pinned = new Set<string>();
  for (const path of paths) {
    const absolute = resolve(path);
    const located = await locate(absolute, asking);
    if (absolute === "/" || located === "/") throw new HiddenPathError(`cannot keep ${path} private: it is the root directory`);
    pinned.add(absolute);
    pinned.add(located);
  }
  return [...pinned];
}

/** Where `path` (absolute) really is: its real path, or its nearest existing parent's real path plus the rest. */
async function locate(path: string, asking: HiddenPathLookups): Promise<string> {
  const fs = asking.fs ?? promises;
  const rest: string[] = [];
  let current = path;
  let retries = 0;
  for (;;) {
    try {
      return join(await answered(path, () => fs.realpath(current), asking), ...rest);
    } catch (error) {
      if (error instanceof HiddenPathError) throw error;
      const code = error instanceof Error && "code" in error ? String(error.code) : "";
      // Where this process may not look, neither may its sandboxed commands (same user): the named path is enough.
      if (code === "EACCES" || code === "EPERM") return path;
      if (code !== "ENOENT" && code !== "ENOTDIR")
        throw new HiddenPathError(`cannot keep ${path} private: cannot resolve it (${code || "error"})`);
      const found = await kindOf(path, current, asking);
      if (found === "symlink") {
        throw new HiddenPathError(`cannot keep ${path} private: ${current} is a symlink whose target does not exist; name the real path`);
      }
      // Made since its real path was asked: asked again.
      if (found === "other" && retries++ < MADE_MEANWHILE_RETRIES) continue;
      rest.unshift(basename(current));
      current = dirname(current);
    }
  }
}

/** What `current` (on the way to the private `path`) is: missing, a link (dangling, as its real path was not had), or other. */
async function kindOf(path: string, current: string, asking: HiddenPathLookups): Promise<"missing" | "symlink" | "other"> {
  const fs = asking.fs ?? promises;
  return answered(path, () => fs.lstat(current), asking).then(
    (stats) => (stats.isSymbolicLink() ? "symlink" : "other"),
    (error: unknown) => {
      if (error instanceof HiddenPathError) throw error;
      return "missing";
    },
  );
}

/** `answer` within the deadline, counted against the private `path`; a HiddenPathError naming it when not had in time. */
async function answered<T>(path: string, ask: () => Promise<T>, { lookups, timeoutMs }: HiddenPathLookups): Promise<T> {
  const outcome = await lookups.ask(path, ask, Date.now() + timeoutMs);
  if (outcome.kind !== "answered")
    throw new HiddenPathError(`cannot keep ${path} private: its file system did not answer within ${timeoutMs} ms`);
  return outcome.value;
}
