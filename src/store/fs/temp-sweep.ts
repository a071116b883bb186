import { readdir, unlink } from "node:fs/promises";
import * as path from "node:path";
import { DiagnosticSeverity } from "../../../gen/worker_runtime/v1/runtime_pb.js";
import type { StoreDiagnostic } from "../../runtime/index.js";
import { type Disk, errorCode, isTempName } from "./disk.js";

/**
 * Removes the temp files an interrupted atomic replace left in one
 * directory (a snapshot's or a health probe's, written and renamed by
 * {@link Disk.replaceFile}): a crash between write and rename leaves one
 * each time, and nothing else would ever remove it. Only while the store
 * holds the data dir's lock, so no write of its own is in flight; names
 * that `keep` accepts are left alone (another process's lock attempt).
 * Cleanup only: a file that cannot go is a warning, retried at the next
 * start, never a reason not to start.
 */
export async function sweepTempFiles(
  disk: Disk,
  rel: string,
  keep: (name: string) => boolean | Promise<boolean> = () => false,
): Promise<StoreDiagnostic[]> {
  const diagnostics: StoreDiagnostic[] = [];
  for (const name of await readdir(disk.abs(rel))) {
    if (!isTempName(name) || (await keep(name))) continue;
    const file = path.join(rel, name);
    await unlink(disk.abs(file)).catch((error: unknown) => {
      if (errorCode(error) === "ENOENT") return;
      diagnostics.push({
        severity: DiagnosticSeverity.WARNING,
        code: "store.cleanup_failed",
        message: `${file}, left by an interrupted write, could not be removed (${errorCode(error)}); it is retried at the next start`,
      });
    });
  }
  return diagnostics;
}
