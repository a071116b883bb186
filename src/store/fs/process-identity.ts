import { readFile } from "node:fs/promises";

/**
 * What tells a process apart from a later one that got the same pid: the
 * boot it runs in and its start time (clock ticks after boot, field 22 of
 * `/proc/<pid>/stat`). Linux only; elsewhere, or when /proc hides a
 * process, the fields are absent and only the pid is compared.
 */
export interface ProcessIdentity {
  bootId?: string;
  startTime?: string;
}

/** The identity of a running process (its own or another's). */
export async function identityOf(pid: number): Promise<ProcessIdentity> {
  const [bootId, stat] = await Promise.all([
    readFile("/proc/sys/kernel/random/boot_id", "utf8").then(
      (text) => text.trim() || undefined,
      () => undefined,
    ),
    readFile(`/proc/${pid}/stat`, "utf8").catch(() => undefined),
  ]);
  // The command name (field 2) is in parentheses and may hold spaces: count fields after its ")".
  const startTime = stat?.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
  return { ...(bootId ? { bootId } : {}), ...(startTime ? { startTime } : {}) };
}

/**
 * Whether the process a lock file names may still run. A pid that is free
 * does not; nor does one whose boot or start time differ from those the
 * lock recorded (the machine rebooted, or the pid was reused). Anything
 * that cannot be checked counts as running: refusing to start is safer
 * than two processes writing one data dir.
 */
export async function mayStillRun(holder: { pid: number } & ProcessIdentity): Promise<boolean> {
  if (!isRunning(holder.pid)) return false;
  const now = await identityOf(holder.pid);
  if (holder.bootId !== undefined && now.bootId !== undefined && holder.bootId !== now.bootId) return false;
  if (holder.startTime !== undefined && now.startTime !== undefined && holder.startTime !== now.startTime) return false;
  return true;
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
