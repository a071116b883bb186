import { randomBytes } from "node:crypto";
import { mkdir, readdir } from "node:fs/promises";
import { StoreConflictError, type StoreOpenInit } from "../../runtime/index.js";
import type { Disk } from "./disk.js";
import { RUNTIME_EVENTS_DIR, RUNTIME_SNAPSHOT, WORKERS_DIR, workerIdFromDirName } from "./layout.js";
import { decodeRuntimeSnapshot, encodeRuntimeSnapshot, type RuntimeSnapshot } from "./runtime-snapshot.js";
import { readSnapshotFile } from "./snapshot-file.js";

/**
 * Reads (or on first open, writes) the runtime snapshot and returns the
 * runtime id and the store id (random, drawn when the data dir is created;
 * see `OpenedStore.storeId`); also makes sure the top-level directories exist. A damaged
 * snapshot stops start-up: it says which runtime owns the data, and
 * guessing would hand the workers to another runtime id.
 */
export async function openRuntimeId(disk: Disk, init: StoreOpenInit): Promise<RuntimeSnapshot> {
  let read: Awaited<ReturnType<typeof readSnapshotFile>> | undefined;
  try {
    read = await readSnapshotFile(disk.abs(RUNTIME_SNAPSHOT));
  } catch (error) {
    if (!(error instanceof Error && "code" in error && error.code === "ENOENT")) throw error;
  }
  if (read === undefined) {
    const existing = await readdir(disk.abs(WORKERS_DIR)).catch(() => []);
    if (existing.some((name) => workerIdFromDirName(name) !== undefined)) {
      throw new Error(
        `${RUNTIME_SNAPSHOT} is missing from the data dir, which holds workers; without it the runtime id is ` +
          `unknown. Restore ${RUNTIME_SNAPSHOT} from a backup, or move the data dir aside to start a new runtime.`,
      );
    }
    const created = { runtimeId: init.runtimeId ?? init.generateRuntimeId(), storeId: randomBytes(16).toString("hex") };
    await mkdir(disk.abs(WORKERS_DIR), { recursive: true });
    await mkdir(disk.abs(RUNTIME_EVENTS_DIR), { recursive: true });
    await disk.replaceFile(RUNTIME_SNAPSHOT, encodeRuntimeSnapshot(created));
    return created;
  }
  const snapshot = "problem" in read ? read : decodeRuntimeSnapshot(read.content);
  if ("problem" in snapshot) {
    throw new Error(
      `${RUNTIME_SNAPSHOT} in the data dir is damaged (${snapshot.problem}). It records which runtime owns the ` +
        `data dir, so the runtime will not start with it. Restore ${RUNTIME_SNAPSHOT} from a backup, or move ` +
        `the data dir aside to start a new, empty runtime.`,
    );
  }
  if (init.runtimeId !== undefined && init.runtimeId !== snapshot.runtimeId) {
    throw new StoreConflictError(
      `the data dir belongs to runtime "${snapshot.runtimeId}", but runtime id "${init.runtimeId}" was ` +
        `configured; start without --runtime-id (or with "${snapshot.runtimeId}"), or use another --data-dir`,
    );
  }
  await mkdir(disk.abs(WORKERS_DIR), { recursive: true });
  await mkdir(disk.abs(RUNTIME_EVENTS_DIR), { recursive: true });
  return snapshot;
}
