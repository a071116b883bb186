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
      return real;
    }
    let ancestor = dirname(lexical);
    for (;;) {
      try {
        const realAncestor = await realpath(ancestor);
        this.assertInside(realAncestor, path);
        return join(realAncestor, relative(ancestor, lexical));
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

  private contains(hostPath: string): boolean {
    return hostPath === this.root || hostPath.startsWith(this.root + sep);
  }
}

function isNotFound(error: unknown): boolean {
  return error instanceof Error && "code" in error && (error.code === "ENOENT" || error.code === "ENOTDIR");
}
