import { lstat, mkdir, realpath } from "node:fs/promises";
import { dirname, isAbsolute, join, relative, resolve, sep } from "node:path";
import { ToolError } from "./tool.js";

/**
 * A worker's workspace directory, and the only way tools turn a model's path
 * into a host path. Confinement is checked on real paths (after resolving
 * symlinks), not just on the text, because a symlink inside the workspace
 * can point anywhere. Errors are ToolErrors the model can read; they name
 * the model's own path, never the host location.
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
    /** Real paths strictly inside the root that the runtime keeps private ({@link withPrivatePaths}). */
    private readonly privatePaths: readonly string[] = [],
  ) {}

  /** Opens a workspace; the directory must exist. */
  static async open(dir: string): Promise<Workspace> {
    return new Workspace(await realpath(dir));
  }

  /**
   * Opens the workspace `dir` under its root `root`, making missing
   * directories one at a time, each only inside the root's real path: a
   * symlink under the root that leads out of it (planted by an earlier
   * command, or by anyone who can write there) is refused with a ToolError
   * instead of becoming the workspace, or having a directory made at its
   * target. Symlinks that stay inside the root are followed.
   */
  static async openInside(root: string, dir: string): Promise<Workspace> {
    // The root is the operator's (trusted) configuration; made if missing, as before.
    await mkdir(root, { recursive: true });
    const realRoot = await realpath(root);
    const inside = (path: string): boolean => path === realRoot || path.startsWith(realRoot + sep);
    let current = realRoot;
    for (const segment of relative(resolve(root), resolve(dir)).split(sep).filter(Boolean)) {
      if (segment === "..") throw new ToolError("the worker's workspace is not inside its root");
      const next = join(current, segment);
      await mkdir(next).catch((cause: unknown) => {
        if (!(cause instanceof Error && "code" in cause && cause.code === "EEXIST")) throw cause;
      });
      current = await realpath(next);
      if (!inside(current)) throw new ToolError("the worker's workspace leads outside its root through a symlink");
    }
    return new Workspace(current);
  }

  /**
   * This workspace with the paths the runtime keeps private: those strictly
   * inside it are refused to the file tools and left out of listings and
   * searches, as the sandbox covers them from commands.
   */
  withPrivatePaths(paths: PrivatePaths): Workspace {
    return new Workspace(
      this.root,
      [...paths.operator, ...paths.roots].filter((real) => real.startsWith(this.root + sep)),
    );
  }

  /** Whether a host path inside the workspace is, or lies under, a private path. */
  isPrivate(hostPath: string): boolean {
    return this.privatePaths.some((path) => hostPath === path || hostPath.startsWith(path + sep));
  }

  /** Resolves a path that must exist (read, list, search, edit). */
  async resolveExisting(path: string): Promise<string> {
    const lexical = this.lexical(path);
    let real: string;
    try {
      real = await realpath(lexical);
    } catch (cause) {
      if (isNotFound(cause)) throw new ToolError(`no such file or directory: ${path}`);
      throw cause;
    }
    this.assertInside(real, path);
    this.assertNotPrivate(real, path);
    return real;
  }

  /**
   * Resolves a path that may not exist yet (write). An existing target must
   * resolve inside; a new one must sit under an existing directory that
   * does. A dangling symlink is refused: writing through it would create
   * its target wherever it points.
   */
  async resolveForWrite(path: string): Promise<string> {
    const lexical = this.lexical(path);
    const existing = await lstat(lexical).catch((cause: unknown) => {
      if (isNotFound(cause)) return undefined;
      throw cause;
    });
    if (existing) {
      let real: string;
      try {
        real = await realpath(lexical);
      } catch (cause) {
        if (isNotFound(cause)) throw new ToolError(`refused: ${path} is a symlink to a missing target`);
        throw cause;
      }
      this.assertInside(real, path);
      this.assertNotPrivate(real, path);
      return real;
    }
    let ancestor = dirname(lexical);
    for (;;) {
      try {
        const realAncestor = await realpath(ancestor);
        this.assertInside(realAncestor, path);
        const target = join(realAncestor, relative(ancestor, lexical));
        this.assertNotPrivate(target, path);
        return target;
      } catch (cause) {
        if (!isNotFound(cause)) throw cause;
        ancestor = dirname(ancestor);
      }
    }
  }

  /** The model-facing form of a host path inside the workspace. */
  display(hostPath: string): string {
    const rel = relative(this.root, hostPath);
    return rel === "" ? "." : rel.split(sep).join("/");
  }

  private lexical(path: string): string {
    if (path.includes("\0")) throw new ToolError("refused: path contains a NUL byte");
    if (isAbsolute(path)) {
      throw new ToolError(`refused: absolute path ${path}; use a path relative to the workspace root`);
    }
    const lexical = resolve(this.root, path === "" ? "." : path);
    if (!this.contains(lexical)) throw new ToolError(`refused: ${path} leads outside the workspace`);
    return lexical;
  }

  private assertInside(real: string, path: string): void {
    if (!this.contains(real)) {
      throw new ToolError(`refused: ${path} leads outside the workspace (through a symlink)`);
    }
  }

  private assertNotPrivate(real: string, path: string): void {
    if (this.isPrivate(real)) throw new ToolError(`refused: ${path} is private to this runtime`);
  }

  private contains(hostPath: string): boolean {
    return hostPath === this.root || hostPath.startsWith(this.root + sep);
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

/** Resolves {@link PrivatePaths}. */
export async function resolvePrivatePaths(
  operatorPaths: readonly string[],
  roots: readonly string[],
  ownRoot: string | undefined,
): Promise<PrivatePaths> {
  const resolved = async (paths: readonly string[]): Promise<string[]> =>
    (await Promise.all(paths.map((path) => realpath(resolve(path)).catch(() => undefined)))).filter((real) => real !== undefined);
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
export function assertNotInsidePrivate(dir: string, paths: PrivatePaths): void {
  const { ownRoot } = paths;
  if (ownRoot === undefined) return;
  const within = (path: string, parent: string): boolean => path === parent || path.startsWith(parent + sep);
  if (paths.operator.some((real) => real !== ownRoot && within(real, ownRoot) && within(dir, real))) {
    throw new ToolError("the worker's workspace lies inside a path this runtime keeps private");
  }
}
