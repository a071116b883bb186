import type { Dirent } from "node:fs";
import { opendir } from "node:fs/promises";
import { join } from "node:path";

/** One directory entry met by a {@link WorkspaceWalk}. */
export interface WalkEntry {
  /** Host path of the entry (inside the workspace: the walk starts there and follows no symlinks). */
  hostPath: string;
  entry: Dirent;
}

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
 */
export class WorkspaceWalk {
  /** The entry bound stopped the walk. */
  entriesCut = false;
  /** Some directories were past the depth bound and not read. */
  depthCut = false;
  private visited = 0;

  constructor(private readonly limits: WalkLimits) {}

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
      for (const entry of await this.read(dir)) {
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
    const entries: Dirent[] = [];
    // Breaking out of the loop closes the directory.
    for await (const entry of await opendir(dir)) {
      if (entries.length >= left) {
        this.entriesCut = true;
        break;
      }
      entries.push(entry);
    }
    this.visited += entries.length;
    return entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }
}
