import { spawnSync } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

const LOCK_CHILD = path.join(path.dirname(fileURLToPath(import.meta.url)), "lock-child.ts");

/**
 * Whether this process is root and user `nobody` can run this Node binary:
 * not where the binary sits in a directory only root may enter (CI unpacks
 * its second Node into a private temp dir).
 */
export function nobodyCanRunNode(): boolean {
  if (process.getuid?.() !== 0) return false;
  return spawnSync(process.execPath, ["-e", ""], { uid: 65534, gid: 65534 }).status === 0;
}

/**
 * Opens a file store on `dataDir` in a child run as `nobody` (lock-child.ts),
 * for a data dir the process may not write (root-owned, mode 0755: readable,
 * not writable): what it printed, `refused <error class>: <message>` or `acquired`.
 */
export function openAsNobody(dataDir: string): string {
  const child = spawnSync(process.execPath, ["--import", "tsx", LOCK_CHILD, dataDir, "0", "0"], {
    encoding: "utf8",
    uid: 65534,
    gid: 65534,
    cwd: process.cwd(),
    env: { ...process.env, LOCK_CHILD_NAMES: "1" },
  });
  return child.stdout.trim();
}
