import { dirname, isAbsolute, join, relative, resolve, sep } from "node:path";
import { type EngineLookups, type HostFs, LookupUnanswered, lookUp, unansweredWhy } from "./host-lookups.js";
import { ToolError } from "./tool.js";

/**
 * A worker's workspace directory, and the only way tools turn a model's path
 * into a host path. Confinement is checked on real paths (after resolving
 * symlinks), not just on the text, because a symlink inside the workspace
 * can point anywhere. Errors are ToolErrors the model can read; they name
 * the model's own path, never the host location. Its real paths and
 * lstats are asked through the engine's lookups (`host`), under its root,
 * within the operator's timeout per call: a workspace or mount whose file
 * system hangs makes a tool call a ToolError saying so, not a call that
 * never ends, and holds one thread of the pool however often it is asked.
 *
 * Known limit: the check and the later open are separate steps, so a
 * concurrent process (a command the model started, another program) that
 * swaps a directory for a symlink in between can still redirect a file
 * tool outside. Opening with O_NOFOLLOW (see regular-file.ts) narrows this
 * to parent directories; closing it needs an OS sandbox.
 */
export class Workspace {
  private constructor(
    /** Real path of the workspace root. */
    readonly root: string,
    /** How its paths are asked of the host (the backend's lookups, the runtime's timeout). */
    private readonly host: EngineLookups,
    /** Real paths strictly inside the root that the runtime keeps private ({@link withPrivatePaths}). */
    private readonly privatePaths: readonly string[] = [],
    /** The worker's mounts, reached by paths under {@link MOUNTS_DIR} ({@link withMounts}). */
    readonly mounts: readonly WorkspaceMount[] = [],
    /** What this directory is to the model, in refusals: "the workspace", or "the mount /mounts/<name>". */
    private readonly label = "the workspace",
  ) {}

  /** Opens a workspace with no root (an embedder's run), made if missing, asked through `host` as {@link openInside} asks. */
  static async open(dir: string, host: EngineLookups): Promise<Workspace> {
    const deadline = Date.now() + host.timeoutMs;
    const ask = <T>(call: (fs: HostFs) => Promise<T>): Promise<T> => opening(host, resolve(dir), "the worker's workspace", deadline, call);
    await ask((fs) => fs.mkdir(dir, { recursive: true }));
    return new Workspace(await ask((fs) => fs.realpath(dir)), host);
  }

  /**
   * Opens the workspace `dir` under its root `root`, making missing
   * directories one at a time, each only inside the root's real path: a
   * symlink under the root that leads out of it (planted by an earlier
   * command, or by anyone who can write there) is refused with a ToolError
   * instead of becoming the workspace, or having a directory made at its
   * target. Symlinks that stay inside the root are followed. Each step is
   * asked through `host` under the root, all by one deadline: a root whose
   * file system does not answer in time is a ToolError saying so.
   */
  static async openInside(root: string, dir: string, host: EngineLookups, what = "the worker's workspace"): Promise<Workspace> {
    const deadline = Date.now() + host.timeoutMs;
    const ask = <T>(call: (fs: HostFs) => Promise<T>): Promise<T> => opening(host, resolve(root), what, deadline, call);
    // The root is the operator's (trusted) configuration; made if missing, as before.
    await ask((fs) => fs.mkdir(root, { recursive: true }));
    const realRoot = await ask((fs) => fs.realpath(root));
    const inside = (path: string): boolean => path === realRoot || path.startsWith(realRoot + sep);
    let current = realRoot;
    for (const segment of relative(resolve(root), resolve(dir)).split(sep).filter(Boolean)) {
      if (segment === "..") throw new ToolError(`${what} is not inside its root`);
      const next = join(current, segment);
      await ask((fs) => fs.mkdir(next)).catch((cause: unknown) => {
        if (!(cause instanceof Error && "code" in cause && cause.code === "EEXIST")) throw cause;
      });
      current = await ask((fs) => fs.realpath(next));
      if (!inside(current)) throw new ToolError(`${what} leads outside its root through a symlink`);
    }
    return new Workspace(current, host);
  }

  /**
   * This workspace with the paths the runtime keeps private: those strictly
   * inside it are refused to the file tools and left out of listings and
   * searches, as the sandbox covers them from commands.
   */
  withPrivatePaths(paths: PrivatePaths): Workspace {
    return new Workspace(
      this.root,
      this.host,
      [...paths.operator, ...paths.roots].filter((real) => real.startsWith(this.root + sep)),
      this.mounts,
      this.label,
    );
  }

  /**
   * This workspace with the worker's mounts, each opened as a workspace of
   * its own (same confinement, its own private paths): a model path under
   * /mounts/<name> resolves inside that mount, every other path as before.
   */
  withMounts(mounts: readonly WorkspaceMount[]): Workspace {
    return new Workspace(this.root, this.host, this.privatePaths, mounts, this.label);
  }

  /** This directory as the mount `name`: its refusals say "the mount /mounts/<name>". */
  asMount(name: string): Workspace {
    return new Workspace(this.root, this.host, this.privatePaths, [], `the mount ${MOUNTS_DIR}/${name}`);
  }

  /** Whether a host path inside the workspace, or one of its mounts, is or lies under a private path. */
  isPrivate(hostPath: string): boolean {
    if (this.mounts.some((mount) => mount.area.isPrivate(hostPath))) return true;
    return this.privatePaths.some((path) => hostPath === path || hostPath.startsWith(path + sep));
  }

  /**
   * Resolves a path that must exist (read, list, search; edit with
   * `toWrite`, which a read-only mount refuses).
   */
  async resolveExisting(path: string, toWrite = false): Promise<string> {
    const { area, relative } = this.route(path, toWrite);
    return area.existing(relative, path);
  }

  /**
   * Resolves a path that may not exist yet (write). An existing target must
   * resolve inside; a new one must sit under an existing directory that
   * does. A dangling symlink is refused: writing through it would create
   * its target wherever it points. A read-only mount refuses.
   */
  async resolveForWrite(path: string): Promise<string> {
    const { area, relative } = this.route(path, true);
    return area.forWrite(relative, path);
  }

  /**
   * Where a model path leads: into a mount when it starts with
   * /mounts/<name> and the worker has mounts, else into this workspace.
   */
  private route(path: string, toWrite: boolean): { area: Workspace; relative: string } {
    if (this.mounts.length === 0 || !(path === MOUNTS_DIR || path.startsWith(`${MOUNTS_DIR}/`))) return { area: this, relative: path };
    const [name = "", ...rest] = path.slice(MOUNTS_DIR.length + 1).split("/");
    const mount = this.mounts.find((candidate) => candidate.name === name);
    if (!mount) {
      const names = this.mounts.map((m) => `${MOUNTS_DIR}/${m.name}`).join(", ");
      throw new ToolError(`refused: ${path}: there is no mount named "${name.slice(0, 64)}"; this worker's mounts are ${names}`);
    }
    if (toWrite && !mount.writable) throw new ToolError(`refused: ${path} is in a read-only mount`);
    return { area: mount.area, relative: rest.join("/") };
  }

  /** Resolves `path` (relative to this directory; shown as `shown`), which must exist. */
  private async existing(path: string, shown: string): Promise<string> {
    const lexical = this.lexical(path, shown);
    const deadline = Date.now() + this.host.timeoutMs;
    let real: string;
    try {
      real = await this.lookUp((fs) => fs.realpath(lexical), shown, deadline);
    } catch (cause) {
      if (isNotFound(cause)) throw new ToolError(`no such file or directory: ${shown}`);
      throw cause;
    }
    this.assertAllowed(real, shown);
    return real;
  }

  /** Resolves `path` (relative to this directory; shown as `shown`) for writing ({@link resolveForWrite}). */
  private async forWrite(path: string, shown: string): Promise<string> {
    const lexical = this.lexical(path, shown);
    const deadline = Date.now() + this.host.timeoutMs;
    const existing = await this.lookUp((fs) => fs.lstat(lexical), shown, deadline).catch((cause: unknown) => {
      if (isNotFound(cause)) return undefined;
      throw cause;
    });
    if (existing) {
      let real: string;
      try {
        real = await this.lookUp((fs) => fs.realpath(lexical), shown, deadline);
      } catch (cause) {
        if (isNotFound(cause)) throw new ToolError(`refused: ${shown} is a symlink to a missing target`);
        throw cause;
      }
      this.assertAllowed(real, shown);
      return real;
    }
    let ancestor = dirname(lexical);
    for (;;) {
      try {
        const realAncestor = await this.lookUp((fs) => fs.realpath(ancestor), shown, deadline);
        const target = join(realAncestor, relative(ancestor, lexical));
        this.assertAllowed(realAncestor, shown, target);
        return target;
      } catch (cause) {
        if (!isNotFound(cause)) throw cause;
        ancestor = dirname(ancestor);
      }
    }
  }

  /**
   * `call`'s answer on `hostPath` (a path this workspace resolved), asked
   * through the engine's lookups under the root of the directory it lies in
   * (this workspace, or the mount it is in) within the runtime's timeout
   * from now (handed to `call`, which may make several file system calls
   * by it): the file tools' opens, stats, reads, writes and directory
   * reads, so a file system nested in the workspace that hangs once a path
   * is resolved is a ToolError naming the model's `shown` path, and holds
   * one thread of the pool however often it is asked. `signal` (the run's)
   * gives it up at once when it aborts. A rejection is thrown as it came.
   */
  fileCall<T>(hostPath: string, shown: string, signal: AbortSignal, call: (fs: HostFs, deadline: number) => Promise<T>): Promise<T> {
    const area = this.mountOf(hostPath)?.area ?? this;
    const deadline = Date.now() + this.host.timeoutMs;
    return area.lookUp((fs) => call(fs, deadline), shown, deadline, signal);
  }

  /**
   * `call`'s answer, asked under this directory's root by `deadline` (one
   * per tool call, or per file call); a ToolError naming the model's
   * `shown` path when it is not had in time. A rejection (missing,
   * unreadable) is thrown as it came.
   */
  private async lookUp<T>(call: (fs: HostFs) => Promise<T>, shown: string, deadline: number, signal?: AbortSignal): Promise<T> {
    try {
      return await lookUp(this.host, this.root, call, deadline, signal);
    } catch (error) {
      if (!(error instanceof LookupUnanswered)) throw error;
      const why = unansweredWhy(error.outcome, `${this.label}'s file system`, this.host.timeoutMs);
      throw new TimedOutToolError(`timed out on ${shown}: ${why}; try again once it answers`);
    }
  }

  /** The model-facing form of a host path inside the workspace ("a/b") or a mount ("/mounts/<name>/a/b"). */
  display(hostPath: string): string {
    const mount = this.mountOf(hostPath);
    if (mount) {
      const rel = relative(mount.area.root, hostPath);
      return rel === "" ? `${MOUNTS_DIR}/${mount.name}` : `${MOUNTS_DIR}/${mount.name}/${rel.split(sep).join("/")}`;
    }
    const rel = relative(this.root, hostPath);
    return rel === "" ? "." : rel.split(sep).join("/");
  }

  /** `message` with the host paths of the workspace and its mounts told as the model knows them. */
  redact(message: string): string {
    const mounts = [...this.mounts].sort((a, b) => b.area.root.length - a.area.root.length);
    const text = mounts.reduce((text, mount) => text.split(mount.area.root).join(`${MOUNTS_DIR}/${mount.name}`), message);
    return text.split(this.root).join(".");
  }

  /** The mount a host path lies in (the deepest, should mounts nest), if any. */
  private mountOf(hostPath: string): WorkspaceMount | undefined {
    let found: WorkspaceMount | undefined;
    for (const mount of this.mounts) {
      if (mount.area.contains(hostPath) && (!found || mount.area.root.length > found.area.root.length)) found = mount;
    }
    return found;
  }

  private lexical(path: string, shown: string): string {
    if (path.includes("\0")) throw new ToolError("refused: path contains a NUL byte");
    if (isAbsolute(path)) {
      const mounts = this.mounts.length > 0 ? ` or under ${MOUNTS_DIR}/<name> for a mount` : "";
      throw new ToolError(`refused: absolute path ${shown}; use a path relative to the workspace root${mounts}`);
    }
    const lexical = resolve(this.root, path === "" ? "." : path);
    if (!this.contains(lexical)) throw new ToolError(`refused: ${shown} leads outside ${this.label}`);
    return lexical;
  }

  /** Refuses `path` when `real` (its real path, or its nearest existing ancestor's) is outside, or `target` (where it leads) is private. */
  private assertAllowed(real: string, path: string, target = real): void {
    if (!this.contains(real)) {
      throw new ToolError(`refused: ${path} leads outside ${this.label} (through a symlink)`);
    }
    if (this.isPrivate(target)) throw new ToolError(`refused: ${path} is private to this runtime`);
  }

  private contains(hostPath: string): boolean {
    return hostPath === this.root || hostPath.startsWith(this.root + sep);
  }
}

/**
 * A file tool's call not had in time (Workspace.fileCall): told to the
 * model like any ToolError, but about the file system, not the file, so
 * a search does not pass over it as a file it may skip.
 */
export class TimedOutToolError extends ToolError {}

/** Where the model finds a worker's mounts: /mounts/<name> (MountSpec in worker.proto). */
export const MOUNTS_DIR = "/mounts";

/** One of a worker's mounts, opened for its file tools. */
export interface WorkspaceMount {
  /** Seen at /mounts/<name>. */
  readonly name: string;
  /** Whether write_file and edit_file may change it. */
  readonly writable: boolean;
  /** The mount's directory, confined like a workspace. */
  readonly area: Workspace;
}

/** `call`'s answer as `what` is opened, asked under `key` (its root) by `deadline`; a ToolError when not had in time. */
async function opening<T>(host: EngineLookups, key: string, what: string, deadline: number, call: (fs: HostFs) => Promise<T>): Promise<T> {
  try {
    return await lookUp(host, key, call, deadline);
  } catch (error) {
    if (!(error instanceof LookupUnanswered)) throw error;
    const why = unansweredWhy(error.outcome, "the file system under its root", host.timeoutMs);
    throw new ToolError(`${what} cannot be opened: ${why}; try again once it answers`);
  }
}

function isNotFound(error: unknown): boolean {
  return error instanceof Error && "code" in error && (error.code === "ENOENT" || error.code === "ENOTDIR");
}

/**
 * The paths a runtime keeps private, as real paths resolved when a run
 * starts (one that does not exist then is dropped): the operator's
 * `hiddenPaths` (secrets, token, data directory; the roots among them left
 * out) and the workspace roots, where other workers' workspaces are.
 */
export interface PrivatePaths {
  operator: readonly string[];
  roots: readonly string[];
  /** The worker's own root, when the run names it. */
  ownRoot: string | undefined;
}

/**
 * Resolves {@link PrivatePaths}, each through the engine's lookups under
 * its own path (as at start-up, hidden-paths.ts), all by one deadline: one
 * that does not answer in time is a ToolError (the run cannot start
 * knowing what to keep private), not a path dropped as missing.
 */
export async function resolvePrivatePaths(
  operatorPaths: readonly string[],
  roots: readonly string[],
  ownRoot: string | undefined,
  host: EngineLookups,
): Promise<PrivatePaths> {
  const deadline = Date.now() + host.timeoutMs;
  const real = (path: string): Promise<string | undefined> =>
    lookUp(host, resolve(path), (fs) => fs.realpath(resolve(path)), deadline).catch((error: unknown) => {
      if (!(error instanceof LookupUnanswered)) return undefined;
      const fileSystem = "the file system of a workspace root or of a path this runtime keeps private";
      throw new ToolError(`the run cannot start: ${unansweredWhy(error.outcome, fileSystem, host.timeoutMs)}; try again once it answers`);
    });
  const resolved = async (paths: readonly string[]): Promise<string[]> =>
    (await Promise.all(paths.map(real))).filter((found) => found !== undefined);
  const realRoots = await resolved(roots);
  return {
    operator: (await resolved(operatorPaths)).filter((real) => !realRoots.includes(real)),
    roots: realRoots,
    ownRoot: ownRoot === undefined ? undefined : (await resolved([ownRoot]))[0],
  };
}

/**
 * Refuses a workspace directory that is, or lies inside, one of the
 * operator's private paths under its own root (the data directory kept
 * under the root, say): the worker would read and write the runtime's
 * private files. Checked before the directory is made and again on its
 * real path. A private path that contains the root is the operator's
 * layout (roots kept inside the data directory) and allowed.
 */
export function assertNotInsidePrivate(dir: string, paths: PrivatePaths, what = "the worker's workspace"): void {
  const { ownRoot } = paths;
  if (ownRoot === undefined) return;
  const within = (path: string, parent: string): boolean => path === parent || path.startsWith(parent + sep);
  if (paths.operator.some((real) => real !== ownRoot && within(real, ownRoot) && within(dir, real))) {
    throw new ToolError(`${what} lies inside a path this runtime keeps private`);
  }
}
