import { promises } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

/** The file system calls {@link realHostPath} makes (node:fs promises; a test may give a slower one). */
export interface HostPathFs {
  realpath(path: string): Promise<string>;
}

/**
 * Where the file tools end up when they open `dir`: its deepest existing
 * ancestor's real path (symlinks followed, as Workspace.openInside follows
 * those that stay inside a root), with the rest of `dir` appended, since a
 * workspace is made only when a run first opens it. Two directories are one
 * on the host exactly when their host paths are equal, so the Runtime's
 * write leases compare these (ExecutionBackend.hostPath). Asynchronous: a
 * hung network mount holds a thread of the pool, not the event loop, and
 * the Runtime stops waiting at its deadline.
 */
export async function realHostPath(dir: string, fs: HostPathFs = promises): Promise<string> {
  const absolute = resolve(dir);
  for (let existing = absolute; ; existing = dirname(existing)) {
    try {
      return join(await fs.realpath(existing), relative(existing, absolute));
    } catch {
      // Missing, not a directory, a loop, unreadable: the part from here on is taken as written.
      if (dirname(existing) === existing) return absolute;
    }
  }
}
