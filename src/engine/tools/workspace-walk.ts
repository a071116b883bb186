import type { Dirent } from "node:fs";
import { join } from "node:path";
import type { HostFs } from "./host-lookups.js";
import { ToolError } from "./tool.js";

/** One directory entry met by a {@link WorkspaceWalk}. */
export interface WalkEntry {
  /** Host path of the entry (inside the workspace: the walk starts there and follows no symlinks). */
  hostPath: string;
  entry: Dirent;
}

/**
 * How a walk asks the host's file system about a path it met: through the
 * engine's lookups, within the runtime's timeout (Workspace.fileCall, with
 * the tool call's signal); not had in time, it throws a ToolError.
 */
export type FileCalls = <T>(hostPath: string, call: (fs: HostFs) => Promise<T>) => Promise<T>;

/** How far one walk may go (ToolLimits.maxWalkEntries, maxWalkDepth). */
export interface WalkLimits {
  /** Directory entries read, all directories together. */
  maxEntries: number;
  /** Directory levels below the start that are read. */
  maxDepth: number;
}

/**
 * A breadth-first walk of a workspace directory, bounded in the entries it
 * reads and the levels it descends, for list_files and search_files: a
 * workspace holding a huge tree (node_modules, a million files) would
 * otherwise make one tool call walk for minutes and hold every name in
 * memory. Each directory is read through an iterator and only up to what is
 * left of the bound, so not even one huge directory is read whole; its
 * entries are sorted by name. After the walk, `entriesCut` and `depthCut`
 * say what it left out, for the tool to tell the model.
 *
 * A folder below the start that cannot be read (no permission, a path past
 * PATH_MAX, gone since it was listed) is skipped, not fatal: one such folder
 * would otherwise fail the whole call and hide everything else. The skips
 * are counted and the first {@link MAX_SKIPPED_SHOWN} named in `skipped`
 * (the tool adds the files it could not open, {@link skip}), so the model
 * knows what it did not see. A start that cannot be read is a ToolError.
 * Each directory is read as one call through `calls`: one whose file
 * system does not answer in time ends the walk with that ToolError (the
 * workspace is not asked again while it is unanswered anyway).
 */
export class WorkspaceWalk {
  /** The entry bound stopped the walk. */
  entriesCut = false;
  /** Some directories were past the depth bound and not read. */
  depthCut = false;
  /** Entries that could not be read, all of them counted. */
  skippedCount = 0;
  /** The first {@link MAX_SKIPPED_SHOWN} of them, as the model sees them (a folder ends with "/"). */
  readonly skipped: string[] = [];
  private visited = 0;

  constructor(
    private readonly limits: WalkLimits,
    /** The model-facing form of a host path (Workspace.display). */
    private readonly display: (hostPath: string) => string,
    /** How each directory is read ({@link FileCalls}). */
    private readonly calls: FileCalls,
  ) {}

  /** Records an entry that could not be read. */
  skip(hostPath: string, directory: boolean): void {
    this.skippedCount++;
    if (this.skipped.length < MAX_SKIPPED_SHOWN) this.skipped.push(shortName(`${this.display(hostPath)}${directory ? "/" : ""}`));
  }

  /**
   * The entries under `start`, directory by directory; with `recursive`,
   * subdirectories (never symlinks) are walked too. An entry `skip` names
   * (a private path) is neither yielded nor walked. Checks `signal` before
   * each directory.
   */
  async *entries(start: string, recursive: boolean, signal: AbortSignal, skip: (hostPath: string) => boolean): AsyncGenerator<WalkEntry> {
    const pending = [{ dir: start, depth: 0 }];
    // An index, not shift(): the queue may hold tens of thousands of directories.
    for (let next = 0; next < pending.length; next++) {
      signal.throwIfAborted();
      const { dir, depth } = pending[next] as { dir: string; depth: number };
      let entries: Dirent[];
      try {
        entries = await this.read(dir);
      } catch (error) {
        const reason = unreadableReason(error);
        if (reason === undefined) throw error;
        if (next === 0) throw new ToolError(`cannot read ${this.display(dir)}: ${reason}`);
        this.skip(dir, true);
        continue;
      }
      for (const entry of entries) {
        const hostPath = join(dir, entry.name);
        if (skip(hostPath)) continue;
        if (recursive && entry.isDirectory()) {
          if (depth < this.limits.maxDepth) pending.push({ dir: hostPath, depth: depth + 1 });
          else this.depthCut = true;
        }
        yield { hostPath, entry };
      }
      if (this.entriesCut) return;
    }
  }

  /** A directory's entries by name, at most what is left of the entry bound. */
  private async read(dir: string): Promise<Dirent[]> {
    const left = this.limits.maxEntries - this.visited;
    const { entries, cut } = await this.calls(dir, async (fs) => {
      const read: Dirent[] = [];
      // Breaking out of the loop closes the directory.
      for await (const entry of await fs.opendir(dir)) {
        if (read.length >= left) return { entries: read, cut: true };
        read.push(entry);
      }
      return { entries: read, cut: false };
    });
    if (cut) this.entriesCut = true;
    this.visited += entries.length;
    return entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }
}

/** How many skipped entries a tool names; the rest are only counted. */
export const MAX_SKIPPED_SHOWN = 10;

/** Longest skipped name shown whole; a longer one is shown by its end, where it differs from its siblings. */
const MAX_SHOWN_NAME = 100;

function shortName(name: string): string {
  return name.length <= MAX_SHOWN_NAME ? name : `…${name.slice(-(MAX_SHOWN_NAME - 1))}`;
}

/** File system errors that make one entry unreadable without saying anything about the rest. */
const UNREADABLE: Readonly<Record<string, string>> = {
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  ENAMETOOLONG: "path too long",
  ELOOP: "too many levels of symbolic links",
  ENOENT: "no longer exists",
  ENOTDIR: "no longer a directory",
  EIO: "input/output error",
};

/**
 * Why an entry could not be read, for the model ("permission denied
 * (EACCES)"), or undefined for an error that is not about the entry (out of
 * file descriptors, an abort), which fails the call as before.
 */
export function unreadableReason(error: unknown): string | undefined {
  if (!(error instanceof Error && "code" in error && typeof error.code === "string")) return undefined;
  const reason = UNREADABLE[error.code];
  return reason === undefined ? undefined : `${reason} (${error.code})`;
}
