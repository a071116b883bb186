import { lstat, realpath } from "node:fs/promises";
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
