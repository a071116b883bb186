import { randomBytes } from "node:crypto";
import { constants, type Stats } from "node:fs";
import { basename, dirname, join } from "node:path";
import type { HostFile, HostFs } from "./host-lookups.js";
import { ToolError } from "./tool.js";

/**
 * Opening workspace files the way file tools must: only regular files with a
 * single link, never blocking on the open itself.
 *
 * - `O_NONBLOCK`: opening a FIFO for reading otherwise waits for a writer
 *   (forever, on a libuv thread cancel cannot reach); opening a device may
 *   block too. The handle is fstat'ed and anything but a regular file is
 *   refused before a byte is read.
 * - `O_NOFOLLOW`: the path was resolved (symlinks included) by the
 *   workspace; a last component swapped for a symlink since then fails the
 *   open instead of being followed.
 * - `nlink > 1`: a hard link shares its inode with a file that may live
 *   outside the workspace, and no path check can tell; reading or writing
 *   through it would reach that file.
 *
 * Each function makes its calls on the `fs` it is given: a file tool calls
 * it inside Workspace.fileCall, so the whole of it (an open through to its
 * close) is one lookup within the runtime's timeout, and a handle opened
 * after the tool gave up is still closed.
 *
 * Known limit: these checks narrow but do not close the race with a
 * concurrent process that swaps a parent directory between the workspace's
 * check and the open; only an OS sandbox closes it.
 */

/** An open regular file and its fstat. */
export interface OpenedFile {
  handle: HostFile;
  info: Stats;
}

/**
 * `use`'s answer on the existing regular file `hostPath`, opened for
 * reading on `fs` and closed after, whatever `use` did; `shown` is the
 * model's path, used in refusals.
 */
export async function withRegularFile<T>(fs: HostFs, hostPath: string, shown: string, use: (opened: OpenedFile) => Promise<T>): Promise<T> {
  let handle: HostFile;
  try {
    handle = await fs.open(hostPath, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOFOLLOW);
  } catch (cause) {
    throw refusalFor(cause, shown) ?? cause;
  }
  try {
    const info = await handle.stat();
    assertRegularFile(info, shown);
    return await use({ handle, info });
  } finally {
    await handle.close();
  }
}

/**
 * Refuses what may not be written: directories, anything but a regular file,
 * and files with more than one link. `lstat` rather than an open, so a FIFO
 * target is never opened at all.
 */
export async function assertWritableTarget(fs: HostFs, hostPath: string, shown: string): Promise<Stats | undefined> {
  const info = await fs.lstat(hostPath).catch((cause: unknown) => {
    if (cause instanceof Error && "code" in cause && cause.code === "ENOENT") return undefined;
    throw cause;
  });
  if (info) assertRegularFile(info, shown);
  return info;
}

/**
 * Writes `content` to a temp file in the target's directory, then renames it
 * over the target. A rename replaces the directory entry: if a hard link
 * appeared at the path after the checks, it is replaced, not written through.
 * A failed or cancelled write leaves the old file intact. The old file's mode
 * is kept. Past `deadline` (the tool call's, which then told the model it
 * timed out) the rename is not made: a write the model was told failed must
 * not land later, when the hung file system answers again.
 */
export async function replaceFile(
  fs: HostFs,
  hostPath: string,
  content: string | Buffer,
  mode: number | undefined,
  signal: AbortSignal,
  deadline: number,
): Promise<void> {
  const temp = join(dirname(hostPath), `.${basename(hostPath)}.${randomBytes(6).toString("hex")}.tmp`);
  const permissions = mode === undefined ? undefined : mode & 0o7777;
  const handle = await fs.open(
    temp,
    constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW,
    permissions ?? 0o666,
  );
  try {
    try {
      // The open's mode is masked by the umask; an existing file's mode is restored exactly.
      if (permissions !== undefined) await handle.chmod(permissions);
      await handle.writeFile(content, { encoding: "utf8", signal });
    } finally {
      await handle.close();
    }
    signal.throwIfAborted();
    if (Date.now() >= deadline) throw new ToolError(`the write to ${basename(hostPath)} was given up: its file system answered too late`);
    await fs.rename(temp, hostPath);
  } catch (error) {
    await fs.unlink(temp).catch(() => undefined);
    throw error;
  }
}

function assertRegularFile(info: Stats, shown: string): void {
  if (info.isDirectory()) throw new ToolError(`${shown} is a directory`);
  if (!info.isFile()) throw new ToolError(`refused: ${shown} is not a regular file (a FIFO, socket or device)`);
  if (info.nlink > 1) {
    throw new ToolError(
      `refused: ${shown} has ${info.nlink} hard links; a hard-linked file may be shared with a file outside the workspace`,
    );
  }
}

function refusalFor(cause: unknown, shown: string): ToolError | undefined {
  if (!(cause instanceof Error && "code" in cause)) return undefined;
  if (cause.code === "ELOOP") return new ToolError(`refused: ${shown} changed into a symlink while it was being opened`);
  if (cause.code === "ENXIO") return new ToolError(`refused: ${shown} is not a regular file (a FIFO, socket or device)`);
  return undefined;
}
