import { Code } from "@connectrpc/connect";
import path from "node:path";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { RuntimeError } from "./errors.js";
import type { ExecutionBackend } from "./execution-backend.js";
import type { HostLookups } from "./unanswered-lookups.js";

/**
 * Who asks for a lookup. A `"request"` (CreateWorker, a run of a worker
 * restored unlocated) is refused while MAX_UNANSWERED_LOOKUPS
 * (unanswered-lookups.ts) such lookups are unanswered: requests can repeat
 * without end. `"restore"` asks once per worker at start-up, so it is
 * refused only by an unanswered lookup in its own root, and its unanswered
 * lookups count against that root alone: two hung roots at restore must not
 * deny a healthy third root (its workers, and later creates in it). Every
 * asker asks a root one lookup at a time (UnansweredLookups.ask), so a hung
 * root holds one of libuv's threads, not one per worker or request in it.
 */
export type LookupAsker = "request" | "restore";

/** A directory a worker needs located: its workspace or a mount, as requested. */
export interface Place {
  root: string;
  path: string;
  /** The mount's name; "" for the workspace. */
  mountName: string;
  /** The request field it came from ("workspace", "mounts[0]"), for errors. */
  field: string;
}

/** createRuntime's workspace roots cannot be used: two overlap on the host, or one was not located in time. */
export class WorkspaceRootsError extends Error {
  override readonly name = "WorkspaceRootsError";
}

/**
 * Host locations of workspaces. Leases and root checks compare directories
 * where the tools end up (the backend's {@link ExecutionBackend.hostPath}:
 * symlinks resolved), not by root name and path as typed: two roots could
 * name one directory, and a symlink inside a root may lead to a sibling.
 * Locating asks the host's file system, which may hang (an NFS or FUSE
 * mount): each lookup is awaited, off the event loop, within a deadline.
 */
export class HostLocations {
  /** Each root's host directory (name → path), located at start-up. */
  private readonly rootHosts = new Map<string, string>();
  /** Roots reached through a symlink (located elsewhere than configured): the operator may re-point them while serving. */
  private readonly movableRoots = new Set<string>();

  private constructor(
    readonly roots: Readonly<Record<string, string>>,
    private readonly hostPath: (dir: string) => Promise<string>,
    /** The runtime's host lookups (shared with its backend), keyed here by root name; counted when a request asked. */
    private readonly host: HostLookups,
  ) {}

  /**
   * Locates the roots (name → host directory) and refuses, with a
   * {@link WorkspaceRootsError} naming them, two that overlap on the host
   * ({@link rootsOverlap}) or one not located within `host.timeoutMs`.
   * `host` is the runtime's one set of lookups, which it also readies its
   * backend with, so one bound holds for every lookup on the host.
   */
  static async create(
    roots: Readonly<Record<string, string>>,
    backend: ExecutionBackend | undefined,
    host: HostLookups,
  ): Promise<HostLocations> {
    const { timeoutMs } = host;
    const resolve = backend?.hostPath?.bind(backend);
    const locations = new HostLocations(roots, async (dir) => (resolve ? resolve(path.resolve(dir)) : path.resolve(dir)), host);
    const located = new Map<string, string>();
    for (const [name, dir] of Object.entries(roots)) {
      const outcome = await host.lookups.ask(name, () => locations.hostPath(dir), Date.now() + timeoutMs);
      if (outcome.kind !== "answered") {
        throw new WorkspaceRootsError(
          `workspace root "${name}" (${dir}) could not be located on the host within ${timeoutMs} ms: its file system did not answer`,
        );
      }
      located.set(dir, outcome.value);
      locations.rootHosts.set(name, outcome.value);
      if (outcome.value !== path.resolve(dir)) locations.movableRoots.add(name);
    }
    const problem = rootsOverlap(roots, (dir) => located.get(dir) ?? dir);
    if (problem) throw new WorkspaceRootsError(problem);
    return locations;
  }

  /**
   * Where each place is on the host (never sent to clients), in order,
   * looked up one after another within one deadline. A root no longer
   * configured has no directory: its name and path stand for it (no host
   * path starts with a name), so its leases still meet each other. Throws
   * UNAVAILABLE HOST_PATH_UNAVAILABLE naming the first place not located in
   * time, as typed; nothing is left waiting but the lookup itself. `asker`
   * decides which unanswered lookups refuse it ({@link LookupAsker}).
   */
  async locate(places: readonly Place[], asker: LookupAsker = "request"): Promise<string[]> {
    const deadline = Date.now() + this.host.timeoutMs;
    const hosts: string[] = [];
    for (const place of places) {
      const rootDir = Object.hasOwn(this.roots, place.root) ? this.roots[place.root] : undefined;
      if (rootDir === undefined) {
        hosts.push(`${place.root}:/${place.path}`);
        continue;
      }
      const dir = path.join(rootDir, ...place.path.split("/").filter(Boolean));
      hosts.push(await this.locateOne(place, dir, deadline, asker));
    }
    return hosts;
  }

  /**
   * Refuses a located place whose host directory is not inside its root's
   * (FAILED_PRECONDITION, WORKSPACE_DENIED naming its path field, with the
   * words its runs would fail with): a symlink under the root leads out of
   * it. The tools refuse to open such a directory, so a worker created with
   * it could never run; CreateWorker says so instead of every run.
   * Undefined (nothing to wait for) when every place is inside its root as
   * last located; else the check against the roots located again
   * ({@link outsideRoot}).
   */
  checkInsideRoots(located: readonly (Place & { hostPath: string })[]): Promise<void> | undefined {
    if (located.every((place) => this.insideAsLastLocated(place))) return undefined;
    return this.outsideRoot(located, "request").then((outside) => {
      if (outside !== undefined) throw outsideRootError(outside);
    });
  }

  /**
   * The first located place whose host directory is not inside its root's,
   * or undefined. Compared with the root as last located (at start-up),
   * and a place not inside it, or any place of a root reached through a
   * symlink, with the root located again now, which is then kept: a root the operator keeps as a symlink may have been
   * re-pointed since, and the tools open the root as it is when a run
   * starts (Workspace.openInside). Those lookups share one deadline of
   * their own; one not answered in time throws as {@link locate}.
   */
  async outsideRoot<T extends Place & { hostPath: string }>(located: readonly T[], asker: LookupAsker): Promise<T | undefined> {
    let deadline: number | undefined;
    for (const place of located) {
      const rootDir = Object.hasOwn(this.roots, place.root) ? this.roots[place.root] : undefined;
      if (rootDir === undefined || this.insideAsLastLocated(place)) continue;
      deadline ??= Date.now() + this.host.timeoutMs;
      const now = await this.locateOne(place, rootDir, deadline, asker);
      this.rootHosts.set(place.root, now);
      if (!isInside(place.hostPath, now)) return place;
    }
    return undefined;
  }

  /**
   * Whether a located place is inside its root as last located (or its root
   * is not configured: nothing to compare). Never for a root reached through
   * a symlink: re-pointed, a place may lead back into where it led before.
   */
  private insideAsLastLocated(place: Place & { hostPath: string }): boolean {
    if (this.movableRoots.has(place.root)) return false;
    const rootHost = this.rootHosts.get(place.root);
    return rootHost === undefined || isInside(place.hostPath, rootHost);
  }

  /** One place's host path, unless a lookup in its root, or too many on the host (for a request), is unanswered. */
  private async locateOne(place: Place, dir: string, deadline: number, asker: LookupAsker): Promise<string> {
    const outcome = await this.host.lookups.ask(place.root, () => this.hostPath(dir), deadline, asker === "request");
    switch (outcome.kind) {
      case "answered":
        return outcome.value;
      case "key_unanswered":
        throw this.unavailable(place, `now: an earlier lookup in root "${place.root}" is still unanswered`);
      case "host_full":
        throw this.unavailable(
          place,
          `now: ${outcome.unanswered === 1 ? "an earlier lookup on the host is" : `${outcome.unanswered} earlier lookups on the host are`} still unanswered`,
        );
      case "waited":
        throw this.unavailable(place, `in time: it waited its turn behind an earlier lookup in root "${place.root}", still unanswered`);
      case "no_time":
        throw this.unavailable(place, `within ${this.host.timeoutMs} ms: the places located before it took that time`);
      case "late":
        throw this.unavailable(place, `within ${this.host.timeoutMs} ms: its file system did not answer`);
    }
  }

  private unavailable(place: Place, why: string): RuntimeError {
    const what = place.mountName !== "" ? `mount "${place.mountName}"` : "workspace";
    return new RuntimeError(
      Code.Unavailable,
      ErrorReason.HOST_PATH_UNAVAILABLE,
      `the ${what} (${place.root}:${place.path}) could not be located on the host ${why}; try again once it answers`,
      { field: place.field, root: place.root, path: place.path, ...(place.mountName !== "" ? { mount_name: place.mountName } : {}) },
    );
  }
}

/** FAILED_PRECONDITION WORKSPACE_DENIED for a place that leads outside its root through a symlink, naming its path field. */
export function outsideRootError(place: Place): RuntimeError {
  const what = place.mountName !== "" ? `the mount /mounts/${place.mountName}` : "the worker's workspace";
  const field = `${place.field}.path`;
  return new RuntimeError(
    Code.FailedPrecondition,
    ErrorReason.WORKSPACE_DENIED,
    `${field}: ${what} leads outside its root through a symlink`,
    {
      field,
      root: place.root,
      path: place.path,
    },
  );
}

/** Whether host path `dir` is `root` or inside it. */
function isInside(dir: string, root: string): boolean {
  return dir === root || dir.startsWith(withSeparator(root));
}

/** Whether two host paths (normalized) are the same directory or one is inside the other. */
export function hostPathsOverlap(a: string, b: string): boolean {
  if (a === b) return true;
  return b.startsWith(withSeparator(a)) || a.startsWith(withSeparator(b));
}

/** A directory path ending in one "/", so a prefix test matches only what is inside it. */
function withSeparator(dir: string): string {
  return dir.endsWith("/") ? dir : `${dir}/`;
}

/**
 * Why these workspace roots (name → host directory) cannot all be
 * configured, or undefined: two that overlap on the host would let one
 * directory be leased for writing under two names. `hostPath` gives a
 * directory as the tools would reach it (symlinks followed).
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
