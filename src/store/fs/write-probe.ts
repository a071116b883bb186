import { rm } from "node:fs/promises";
import { StoreWriteError } from "../../runtime/index.js";
import type { Disk } from "./disk.js";

/** Scratch file written by {@link probeWrite}. */
const PROBE_FILE = "write.probe";

/**
 * Writes and syncs a scratch file in the data dir and removes it: the file
 * store's `probeWrite`, which tells the runtime's health whether the disk
 * takes writes again after a failure.
 */
export async function probeWrite(disk: Disk): Promise<void> {
  try {
    await disk.replaceFile(PROBE_FILE, new Uint8Array([1]));
    await rm(disk.abs(PROBE_FILE), { force: true });
  } catch (error) {
    throw new StoreWriteError("the data dir cannot be written", { cause: error });
  }
}
