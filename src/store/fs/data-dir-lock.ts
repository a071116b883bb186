import { randomBytes } from "node:crypto";
import { lstat, open, readFile, realpath, rename, unlink } from "node:fs/promises";
import type { Server } from "node:net";
import path from "node:path";
import { DataDirInUseError, notWritable } from "./data-dir-errors.js";
import { type Disk, errorCode } from "./disk.js";
import { closeLiveness, holderAnswers, LOCK_SOCKET, listenLiveness } from "./lock-socket.js";
import { identityOf, mayStillRun, type ProcessIdentity } from "./process-identity.js";

/** Name of the lock file inside the data dir. */
export const LOCK_FILE = "LOCK";

/**
 * What a full disk refused. Start-up writes nothing else before the store
 * can report a failed write as DEGRADED, but without the lock it cannot
 * open at all (docs/architecture.md).
 */
const LOCK_FAILED = `its lock file (${LOCK_FILE}, a few hundred bytes) cannot be written`;

/** What a lock file records about its holder. */
type Holder = { pid: number } & ProcessIdentity;

/**
 * Keeps two runtime processes from opening one data dir: both would append
 * to the same logs and corrupt them. The lock file names the holding
 * process; a lock left by a process that no longer runs (kill -9, power
 * loss, a reboot that gave its pid to another process) is taken over, so
 * crash recovery needs no manual step.
 *
 * Races are closed three ways: the lock file appears complete in one step
 * (written to a temp file, then hard-linked into place), so nobody reads a
 * half-written one and takes it for stale; a stale lock is removed only by
 * the process holding the breaker file, and only if it is still the one
 * judged stale; and stores of one process claim the data dir (by its real
 * path) before their first await. A holder also answers on `LOCK.sock`
 * (lock-socket.ts) while it runs, which refuses a second container on the
 * same volume whatever the pids say.
 */
export class DataDirLock {
  /** Lock files this process holds or is taking: a pid alone cannot tell two stores in one process apart. */
  private static readonly heldHere = new Set<string>();

  private constructor(
    private readonly file: string,
    /** The liveness socket (lock-socket.ts), when one could be made. */
    private readonly liveness: Server | undefined,
  ) {}

  /**
   * Takes the lock of `disk`'s data dir, or throws a message saying who
   * holds it and what to do. Its one write goes through `disk` (fault
   * injection sees it as it sees the store's).
   */
  static async acquire(disk: Disk): Promise<DataDirLock> {
    const file = path.join(await realpath(disk.root), LOCK_FILE);
    if (DataDirLock.heldHere.has(file)) {
      throw new DataDirInUseError("the data dir is already open in this process; close the other store first");
    }
    DataDirLock.heldHere.add(file);
    try {
      await take(disk, file);
      return new DataDirLock(file, await listenLiveness(socketOf(file)));
    } catch (error) {
      DataDirLock.heldHere.delete(file);
      throw error;
    }
  }

  /** Releases the lock. */
  async release(): Promise<void> {
    if (this.liveness) await closeLiveness(this.liveness, socketOf(this.file));
    await unlink(this.file).catch(() => undefined);
    DataDirLock.heldHere.delete(this.file);
  }
}

/**
 * Writes the holder's identity to a temp file, then places it. The temp file
 * is removed whatever fails (a full disk fails the write, not the open:
 * left, it would stay for ever); one a crash left is swept at open
 * (file-store.ts).
 */
async function take(disk: Disk, file: string): Promise<void> {
  const content = `${JSON.stringify({ pid: process.pid, acquiredAt: new Date().toISOString(), ...(await identityOf(process.pid)) })}\n`;
  const tmp = `${file}.tmp-${randomBytes(4).toString("hex")}`;
  const handle = await open(tmp, "wx").catch((error: unknown) => {
    throw notWritable(path.dirname(file), error, LOCK_FAILED);
  });
  try {
    await disk.write(handle, path.basename(tmp), new TextEncoder().encode(content), 0);
    await disk.sync(handle, path.basename(tmp));
  } catch (error) {
    await handle.close();
    await unlink(tmp).catch(() => undefined);
    throw notWritable(path.dirname(file), error, LOCK_FAILED);
  }
  await handle.close();
  try {
    await takeWith(disk, tmp, file, content);
  } finally {
    await unlink(tmp).catch(() => undefined);
  }
}

/**
 * Places the lock, or removes a stale one and tries again. Only the holder
 * of the breaker file (`LOCK.break`, taken like the lock) removes a lock,
 * and only the one it judged stale, so two processes taking over the same
 * stale lock cannot remove each other's new one.
 */
async function takeWith(disk: Disk, tmp: string, file: string, content: string): Promise<void> {
  const breaker = `${file}.break`;
  const unreadable = new UnreadableLock();
  const unreadableBreaker = new UnreadableLock();
  for (let attempt = 0; attempt < 100; attempt++) {
    if (await placeLock(disk, tmp, file, content)) return;
    const found = await readFile(file, "utf8").catch(() => undefined);
    if (found === undefined) continue; // released meanwhile
    const holder = parseHolder(found);
    if (holder === undefined && unreadable.mayBeBeingWritten(found)) {
      await new Promise((resolve) => setTimeout(resolve, 25));
      continue;
    }
    if ((await holderAnswers(socketOf(file))) || !(await isStale(holder))) {
      throw new DataDirInUseError(
        `the data dir is in use by another runtime process (pid ${holder?.pid ?? "unknown"}); stop that process first, or use ` +
          `another --data-dir. If no runtime is running, delete ${LOCK_FILE} in the data dir.`,
      );
    }
    if (!(await placeLock(disk, tmp, breaker, content))) {
      // Another process is taking the stale lock over (wait for it), or died doing so (a stale breaker).
      const other = await readFile(breaker, "utf8").catch(() => undefined);
      const breakerHolder = other === undefined ? undefined : parseHolder(other);
      const beingWritten = other !== undefined && breakerHolder === undefined && unreadableBreaker.mayBeBeingWritten(other);
      if (other !== undefined && !beingWritten && (await isStale(breakerHolder))) await discardIfUnchanged(disk, breaker, other);
      else await new Promise((resolve) => setTimeout(resolve, 10));
      continue;
    }
    try {
      if ((await readFile(file, "utf8").catch(() => undefined)) === found) await unlink(file).catch(() => undefined);
    } finally {
      await unlink(breaker).catch(() => undefined);
    }
  }
  throw new Error(`could not take ${LOCK_FILE} in the data dir; another process keeps creating it`);
}

/**
 * A lock file that names no holder. Where hard links work it is damage,
 * and stale; without them a lock is created in place and reads empty
 * until its holder wrote it, and taken for stale then, it was removed from
 * under its holder (two runtimes on one data dir). So it counts as stale
 * only once it has read the same for {@link GRACE_MS}, timed here (a
 * network file system's mtime follows another clock).
 */
class UnreadableLock {
  private static readonly GRACE_MS = 1_000;
  private content: string | undefined;
  private since = 0;

  mayBeBeingWritten(found: string): boolean {
    const now = performance.now();
    if (found !== this.content) {
      this.content = found;
      this.since = now;
    }
    return now - this.since < UnreadableLock.GRACE_MS;
  }
}

/** A lock whose holder is unreadable, is this process's pid (a restarted container), or has stopped running. */
async function isStale(holder: Holder | undefined): Promise<boolean> {
  return holder === undefined || holder.pid === process.pid || !(await mayStillRun(holder));
}

/** A hard link's refusal by a file system that has none (FAT, exFAT, some network and FUSE mounts). */
const NO_HARD_LINKS = new Set(["EPERM", "ENOTSUP", "EOPNOTSUPP", "ENOSYS"]);

/** Puts the complete lock file (or breaker) in place; false when one already exists. */
async function placeLock(disk: Disk, tmp: string, file: string, content: string): Promise<boolean> {
  try {
    await disk.link(path.basename(tmp), path.basename(file));
    return true;
  } catch (error) {
    if (errorCode(error) === "EEXIST") return false;
    if (!NO_HARD_LINKS.has(errorCode(error))) throw error;
  }
  return createInPlace(disk, file, content);
}

/**
 * Without hard links: the file is created, then written (a reader may find
 * it empty meanwhile: {@link UnreadableLock}). A failed write removes what
 * it created: left, an empty lock cost the next start a wait, and the
 * error was the file system's bare ENOSPC.
 */
async function createInPlace(disk: Disk, file: string, content: string): Promise<boolean> {
  try {
    await disk.writeNewFile(path.basename(file), new TextEncoder().encode(content));
    return true;
  } catch (error) {
    if (errorCode(error) === "EEXIST") return false;
    await unlink(file).catch(() => undefined);
    throw notWritable(path.dirname(file), error, LOCK_FAILED);
  }
}

/**
 * Removes a stale breaker file whose content is `stale`. It is moved aside
 * atomically first: if another process replaced it meanwhile, what was
 * moved is that process's live one, and it is put back.
 */
async function discardIfUnchanged(disk: Disk, file: string, stale: string): Promise<void> {
  const aside = `${file}.stale-${randomBytes(4).toString("hex")}`;
  try {
    await rename(file, aside);
  } catch {
    return; // gone already: the next attempt sees what is there now
  }
  const moved = await readFile(aside, "utf8").catch(() => undefined);
  if (moved !== undefined && moved !== stale) await placeLock(disk, aside, file, moved).catch(() => undefined);
  await unlink(aside).catch(() => undefined);
}

function parseHolder(content: string): Holder | undefined {
  try {
    const parsed: unknown = JSON.parse(content);
    if (typeof parsed !== "object" || parsed === null || !("pid" in parsed)) return undefined;
    const { pid } = parsed;
    if (typeof pid !== "number" || !Number.isInteger(pid) || pid <= 0) return undefined;
    const bootId = "bootId" in parsed && typeof parsed.bootId === "string" ? parsed.bootId : undefined;
    const startTime = "startTime" in parsed && typeof parsed.startTime === "string" ? parsed.startTime : undefined;
    return { pid, ...(bootId !== undefined ? { bootId } : {}), ...(startTime !== undefined ? { startTime } : {}) };
  } catch {
    return undefined;
  }
}

/**
 * How long another process's lock attempt may keep its temp file: taking
 * the lock writes, syncs and links it in milliseconds, so an older one was
 * left by a process killed while taking the lock (or by a version that left
 * it on a full disk).
 */
const LOCK_ATTEMPT_MS = 60_000;

/** Whether `file` (a temp file in the data dir) may belong to a lock attempt still under way: not to be swept. */
export async function isLockAttempt(file: string): Promise<boolean> {
  if (!path.basename(file).startsWith(`${LOCK_FILE}.`)) return false;
  const stats = await lstat(file).catch(() => undefined);
  return stats !== undefined && Date.now() - stats.mtimeMs < LOCK_ATTEMPT_MS;
}

function socketOf(lockFile: string): string {
  return path.join(path.dirname(lockFile), LOCK_SOCKET);
}
