import {
  optionalBoolArg,
  optionalIntArg,
  optionalStringArg,
  stringArg,
  requireWorkspace,
  ToolError,
  type ToolContext,
  type ToolDefinition,
} from "./tool.js";
import type { HostFs } from "./host-lookups.js";
import { withRegularFile } from "./regular-file.js";
import type { ToolLimits } from "./tool-limits.js";
import { utf8BytePrefix } from "../utf8-prefix.js";
import { TimedOutToolError, type Workspace } from "./workspace.js";
import { type FileCalls, unreadableReason, type WalkLimits, WorkspaceWalk } from "./workspace-walk.js";

/**
 * Tools that look at the workspace without changing it (`fs.read`). Every
 * file system call they make once a path is resolved is asked through
 * Workspace.fileCall (a stat, a file from open to close, a directory read),
 * within the runtime's timeout.
 */

/** read_file: a bounded byte slice of a text file. */
export const readFileTool: ToolDefinition = {
  name: "read_file",
  capability: "fs.read",
  description:
    "Read a UTF-8 text file in the workspace; bytes that are not UTF-8 are shown as U+FFFD. Long files are returned in slices, cut between characters; the result says how to read the next slice.",
  parameters: {
    type: "object",
    properties: {
      path: { type: "string", description: "File path relative to the workspace root." },
      offset: { type: "integer", description: "Byte offset to start at (default 0)." },
    },
    required: ["path"],
    additionalProperties: false,
  },
  async run(args, context) {
    const workspace = requireWorkspace(context, "file tools");
    const path = stringArg(args, "path");
    const offset = optionalIntArg(args, "offset") ?? 0;
    const hostPath = await workspace.resolveExisting(path);
    return workspace.fileCall(hostPath, path, context.signal, async (fs) => {
      if ((await fs.stat(hostPath)).isDirectory()) throw new ToolError(`${path} is a directory; use list_files`);
      return withRegularFile(fs, hostPath, path, async ({ handle, info }) => {
        // Past the end there is nothing to show; "[showing bytes 5000-5000 of 1000]" left the model to work that out.
        if (offset > 0 && offset >= info.size) {
          const last = info.size === 0 ? "the file is empty" : `the last offset to read from is ${info.size - 1}`;
          throw new ToolError(`${path} has ${info.size} bytes; offset ${offset} is past its end (${last})`);
        }
        // A slice over the tool output bound would be cut, and the model told the wrong next offset: read only what fits.
        const { maxReadBytes, maxOutputBytes } = context.limits;
        const room = Math.max(1, maxOutputBytes - READ_NOTE_ROOM);
        const length = Math.min(maxReadBytes, room, info.size - offset);
        const buffer = Buffer.alloc(length);
        const { bytesRead } = await handle.read(buffer, 0, length, offset);
        // Shown up to a character boundary, and no more than fits `room` once invalid bytes are U+FFFD: the note's range is what the model got.
        const shown = utf8BytePrefix(buffer.subarray(0, bytesRead), room, offset + bytesRead >= info.size);
        const text = buffer.subarray(0, shown).toString("utf8");
        const end = offset + shown;
        if (end >= info.size && offset === 0) return { output: text };
        const note =
          end < info.size
            ? `[file truncated: showing bytes ${offset}-${end} of ${info.size}; call read_file with offset=${end} for more]`
            : `[showing bytes ${offset}-${end} of ${info.size}]`;
        return { output: text, notes: [note], truncated: end < info.size };
      });
    });
  },
};

/** Bytes of the tool output bound read_file leaves for its note ("[file truncated: showing bytes ...]"). */
const READ_NOTE_ROOM = 256;

/** list_files: directory entries, optionally recursive, bounded. */
export const listFilesTool: ToolDefinition = {
  name: "list_files",
  capability: "fs.read",
  description:
    "List files in a workspace directory. Directories end with '/'. Symlinks are listed but not followed. Long or deep listings are cut, and the result says so.",
  parameters: {
    type: "object",
    properties: {
      path: { type: "string", description: "Directory relative to the workspace root (default: the root)." },
      recursive: { type: "boolean", description: "List subdirectories too (default false)." },
    },
    additionalProperties: false,
  },
  async run(args, context) {
    const workspace = requireWorkspace(context, "file tools");
    const path = optionalStringArg(args, "path") ?? ".";
    const recursive = optionalBoolArg(args, "recursive") ?? false;
    const start = await workspace.resolveExisting(path);
    const directory = await workspace.fileCall(start, path, context.signal, async (fs) => (await fs.stat(start)).isDirectory());
    if (!directory) throw new ToolError(`${path} is not a directory`);
    const max = context.limits.maxListEntries;
    const walk = new WorkspaceWalk(walkLimits(context.limits), (hostPath) => workspace.display(hostPath), fileCalls(workspace, context));
    const lines: string[] = [];
    let more = false;
    for await (const { hostPath, entry } of walk.entries(start, recursive, context.signal, (hostPath) => workspace.isPrivate(hostPath))) {
      if (lines.length >= max) {
        more = true;
        break;
      }
      const shown = workspace.display(hostPath);
      if (entry.isDirectory()) lines.push(`${shown}/`);
      else lines.push(entry.isSymbolicLink() ? `${shown} (symlink)` : shown);
    }
    const notes = [
      ...(more ? [`[listing truncated at ${max} entries]`] : walkNotes(walk, context.limits, "listing", "list")),
      ...skippedNote(walk, "listing"),
    ];
    if (lines.length === 0 && notes.length === 0) return { output: "(empty directory)" };
    if (notes.length === 0) return { output: lines.join("\n") };
    return { output: lines.join("\n"), notes, truncated: true };
  },
};

/** search_files: literal text search over workspace files, bounded. */
export const searchFilesTool: ToolDefinition = {
  name: "search_files",
  capability: "fs.read",
  description:
    "Search workspace files for a literal text (case-sensitive). Returns 'path:line: text' lines. Binary, very large and hard-linked files are skipped; one search walks a bounded number of directory entries and levels and reads a bounded number of files and bytes.",
  parameters: {
    type: "object",
    properties: {
      query: { type: "string", description: "The exact text to find." },
      path: { type: "string", description: "Directory (or one file) to search, relative to the workspace root (default: the root)." },
    },
    required: ["query"],
    additionalProperties: false,
  },
  async run(args, context) {
    const workspace = requireWorkspace(context, "file tools");
    const query = stringArg(args, "query");
    if (query === "") throw new ToolError('argument "query" must not be empty');
    const path = optionalStringArg(args, "path") ?? ".";
    const start = await workspace.resolveExisting(path);
    const { maxSearchMatches, maxSearchFileBytes, maxSearchFiles, maxSearchTotalBytes } = context.limits;
    const matches: string[] = [];
    const collect = (hostPath: string, content: Buffer): void => {
      if (content.subarray(0, 8192).includes(0)) return;
      const lines = content.toString("utf8").split("\n");
      for (let i = 0; i < lines.length && matches.length < maxSearchMatches; i++) {
        const line = lines[i] as string;
        if (line.includes(query)) matches.push(`${workspace.display(hostPath)}:${i + 1}: ${line.slice(0, 200)}`);
      }
    };
    // A file named as the path is searched alone (as grep would); its refusals are the model's to read.
    if (await workspace.fileCall(start, path, context.signal, async (fs) => (await fs.stat(start)).isFile())) {
      collect(start, await workspace.fileCall(start, path, context.signal, (fs) => readNamedFile(fs, start, path, maxSearchFileBytes)));
      const cut = matches.length >= maxSearchMatches ? [`[search stopped at ${maxSearchMatches} matches; narrow the query]`] : [];
      if (cut.length === 0) return { output: matches.length === 0 ? "no matches" : matches.join("\n") };
      return { output: matches.join("\n"), notes: cut, truncated: true };
    }
    const calls = fileCalls(workspace, context);
    const walk = new WorkspaceWalk(walkLimits(context.limits), (hostPath) => workspace.display(hostPath), calls);
    let filesRead = 0;
    let bytesRead = 0;
    let stopped: string | undefined;
    for await (const { hostPath, entry } of walk.entries(start, true, context.signal, (hostPath) => workspace.isPrivate(hostPath))) {
      if (!entry.isFile()) continue;
      context.signal.throwIfAborted();
      if (filesRead >= maxSearchFiles || bytesRead >= maxSearchTotalBytes) {
        stopped = `[search stopped after reading ${filesRead} files (${bytesRead} bytes), its limit; narrow the path]`;
        break;
      }
      const content = await readSearchable(hostPath, maxSearchFileBytes, walk, calls);
      if (!content) continue;
      filesRead++;
      bytesRead += content.length;
      collect(hostPath, content);
      if (matches.length >= maxSearchMatches) {
        stopped = `[search stopped at ${maxSearchMatches} matches; narrow the query or path]`;
        break;
      }
    }
    const notes = [...(stopped ? [stopped] : walkNotes(walk, context.limits, "search", "search")), ...skippedNote(walk, "search")];
    if (notes.length === 0) return { output: matches.length === 0 ? "no matches" : matches.join("\n") };
    return { output: matches.length === 0 ? "no matches so far" : matches.join("\n"), notes, truncated: true };
  },
};

/** A walk's file calls: each through the workspace's lookups, told to the model by its path there, given up when the run is cancelled. */
function fileCalls(workspace: Workspace, context: ToolContext): FileCalls {
  return (hostPath, call) => workspace.fileCall(hostPath, workspace.display(hostPath), context.signal, call);
}

function walkLimits(limits: ToolLimits): WalkLimits {
  return { maxEntries: limits.maxWalkEntries, maxDepth: limits.maxWalkDepth };
}

/** What a walk left out, told to the model: `what` stopped; the model should `verb` elsewhere. */
function walkNotes(walk: WorkspaceWalk, limits: ToolLimits, what: "listing" | "search", verb: "list" | "search"): string[] {
  const notes: string[] = [];
  if (walk.entriesCut) {
    notes.push(
      `[${what} stopped after visiting ${limits.maxWalkEntries} directory entries, its limit; ${verb === "list" ? "list a narrower path" : "narrow the path"}]`,
    );
  }
  if (walk.depthCut) {
    const went = what === "listing" ? "did not go" : "did not look";
    notes.push(`[${what} ${went} more than ${limits.maxWalkDepth} directory levels down; ${verb} from a deeper path]`);
  }
  return notes;
}

/**
 * The file search_files was named, read whole within `maxBytes`; what the
 * walk would skip quietly (a FIFO, a hard link, too large) is refused here
 * with a ToolError, since the model asked for this file.
 */
async function readNamedFile(fs: HostFs, hostPath: string, shown: string, maxBytes: number): Promise<Buffer> {
  return withRegularFile(fs, hostPath, shown, async ({ handle, info }) => {
    if (info.size > maxBytes) throw new ToolError(`${shown} is ${info.size} bytes; search_files reads files up to ${maxBytes} bytes`);
    return handle.readFile();
  });
}

/** The entries a walk could not read, named for the model (bounded), or nothing. */
function skippedNote(walk: WorkspaceWalk, what: "listing" | "search"): string[] {
  const count = walk.skippedCount;
  if (count === 0) return [];
  const rest = count > walk.skipped.length ? `, and ${count - walk.skipped.length} more` : "";
  return [`[${what} skipped ${count} unreadable ${count === 1 ? "entry" : "entries"}: ${walk.skipped.join(", ")}${rest}]`];
}

/**
 * A file's content for search_files, or undefined when it is skipped: too
 * large, not a regular file, or hard-linked (its content may belong to a
 * file outside the workspace), silently, as the tool's description says;
 * or unreadable (no permission, a path past PATH_MAX), recorded on `walk`
 * for the model.
 */
async function readSearchable(hostPath: string, maxBytes: number, walk: WorkspaceWalk, calls: FileCalls): Promise<Buffer | undefined> {
  try {
    return await calls(hostPath, (fs) =>
      withRegularFile(fs, hostPath, hostPath, async ({ handle, info }) => (info.size > maxBytes ? undefined : handle.readFile())),
    );
  } catch (error) {
    // Refused (not a regular file, hard-linked): skipped quietly. One not had in time is a ToolError too, but not the file's own.
    if (error instanceof ToolError && !(error instanceof TimedOutToolError)) return undefined;
    if (unreadableReason(error) === undefined) throw error;
    walk.skip(hostPath, false);
    return undefined;
  }
}
