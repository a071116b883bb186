import path from "node:path";
import type { ExecutionBackend } from "./execution-backend.js";

/**
 * Host locations of workspaces. Leases and root checks compare directories
 * where the tools end up (the backend's {@link ExecutionBackend.hostPath}:
 * symlinks resolved), not by root name and path as typed: two roots could
 * name one directory, and a symlink inside a root may lead to a sibling.
 */
export class HostLocations {
  private readonly hostPath: (dir: string) => string;

  /** Throws, naming both, when two of the roots (name → host directory) overlap on the host ({@link rootsOverlap}). */
  constructor(
    readonly roots: Readonly<Record<string, string>>,
    backend: ExecutionBackend | undefined,
  ) {
    const resolve = backend?.hostPath?.bind(backend);
    this.hostPath = (dir) => (resolve ? resolve(path.resolve(dir)) : path.resolve(dir));
    const problem = rootsOverlap(roots, this.hostPath);
    if (problem) throw new Error(problem);
  }

  /**
   * Where a root's directory `relative` is on the host; never sent to
   * clients. A root no longer configured has no directory: its name and
   * path stand for it (no host path starts with a name), so its leases
   * still meet each other.
   */
  of(root: string, relative: string): string {
    const rootDir = Object.hasOwn(this.roots, root) ? this.roots[root] : undefined;
    if (rootDir === undefined) return `${root}:/${relative}`;
    return this.hostPath(path.join(rootDir, ...relative.split("/").filter(Boolean)));
  }
}

/** Whether two host paths (normalized) are the same directory or one is inside the other. */
export function hostPathsOverlap(a: string, b: string): boolean {
  if (a === b) return true;
  const withSep = (p: string): string => (p.endsWith("/") ? p : `${p}/`);
  return b.startsWith(withSep(a)) || a.startsWith(withSep(b));
}

/**
 * Why these workspace roots (name → host directory) cannot all be
 * configured, or undefined: two that overlap on the host would let one
 * directory be leased for writing under two names. `hostPath` resolves a
 * directory as the tools would (symlinks followed).
 */
export function rootsOverlap(roots: Readonly<Record<string, string>>, hostPath: (dir: string) => string): string | undefined {
  const located = Object.entries(roots).map(([name, dir]) => ({ name, dir, host: hostPath(dir) }));
  for (const [i, a] of located.entries()) {
    const b = located.slice(i + 1).find((other) => hostPathsOverlap(a.host, other.host));
    if (b) {
      return `workspace roots "${a.name}" (${a.dir}) and "${b.name}" (${b.dir}) overlap on the host: one directory would be leased under two names; give each root a directory apart from the others`;
    }
  }
  return undefined;
}
