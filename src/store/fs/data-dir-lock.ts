import { open, readFile, unlink } from "node:fs/promises";
import path from "node:path";

/** Name of the lock file inside the data dir. */
export const LOCK_FILE = "LOCK";

/**
 * Keeps two runtime processes from opening one data dir: both would append
 * to the same logs and corrupt them. The lock file names the holding
 * process; a lock left by a process that no longer runs (kill -9, power
 * loss) is taken over, so crash recovery needs no manual step.
 */
export class DataDirLock {
  /** Lock files this process holds: a pid alone cannot tell two stores in one process apart. */
  private static readonly heldHere = new Set<string>();

  private constructor(private readonly file: string) {}

  /** Takes the lock, or throws a message saying who holds it and what to do. */
  static async acquire(root: string): Promise<DataDirLock> {
    const file = path.join(path.resolve(root), LOCK_FILE);
    if (DataDirLock.heldHere.has(file)) {
      throw new Error("the data dir is already open in this process; close the other store first");
    }
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        const handle = await open(file, "wx");
        try {
          await handle.writeFile(`${JSON.stringify({ pid: process.pid, acquiredAt: new Date().toISOString() })}\n`);
          await handle.sync();
        } finally {
          await handle.close();
        }
        DataDirLock.heldHere.add(file);
        return new DataDirLock(file);
      } catch (error) {
        if (!(error instanceof Error && "code" in error && error.code === "EEXIST")) throw error;
      }
      const holder = await readHolder(file);
      if (holder !== undefined && holder !== process.pid && isRunning(holder)) {
        throw new Error(
          `the data dir is in use by another runtime process (pid ${holder}); stop that process first, or use ` +
            `another --data-dir. If no runtime is running, delete ${LOCK_FILE} in the data dir.`,
        );
      }
      await unlink(file).catch(() => undefined);
    }
    throw new Error(`could not take ${LOCK_FILE} in the data dir; another process keeps creating it`);
  }

  /** Releases the lock. */
  async release(): Promise<void> {
    DataDirLock.heldHere.delete(this.file);
    await unlink(this.file).catch(() => undefined);
  }
}

async function readHolder(file: string): Promise<number | undefined> {
  try {
    const parsed: unknown = JSON.parse(await readFile(file, "utf8"));
    const pid = typeof parsed === "object" && parsed !== null && "pid" in parsed ? parsed.pid : undefined;
    return typeof pid === "number" && Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists but belongs to someone else — still running.
    return error instanceof Error && "code" in error && error.code === "EPERM";
  }
}
