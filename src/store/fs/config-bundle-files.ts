import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { mkdir, readdir } from "node:fs/promises";
import * as path from "node:path";
import { type ConfigBundle, ConfigBundleSchema } from "../../../gen/worker_runtime/v1/profile_pb.js";
import { type DamagedConfigBundle, StoreWriteError } from "../../runtime/index.js";
import { type Disk, isTempName } from "./disk.js";
import { decodeSnapshot, encodeSnapshot, readSnapshotFile } from "./snapshot-file.js";

/**
 * Config bundles on disk: `bundles/<id>.bundle`, one checksummed snapshot
 * frame (snapshot-file.ts) holding the canonical bundle's protobuf bytes,
 * replaced atomically like worker snapshots. Bundle ids are checked by the
 * core ([A-Za-z0-9._-], never "." or ".."), so they are safe file names,
 * and unique ignoring case (the core refuses an id that differs from a held
 * one only in case), so two ids never share a file on a case-insensitive
 * file system (macOS, Windows).
 */
export const BUNDLES_DIR = "bundles";
const SUFFIX = ".bundle";

/** Writes one bundle durably (temp file, fsync, rename, fsync the dir). */
export async function writeConfigBundle(disk: Disk, bundle: ConfigBundle): Promise<void> {
  try {
    const created = await mkdir(disk.abs(BUNDLES_DIR), { recursive: true });
    if (created !== undefined) await disk.syncDir(".");
    await disk.replaceFile(path.join(BUNDLES_DIR, `${bundle.bundleId}${SUFFIX}`), encodeSnapshot(toBinary(ConfigBundleSchema, bundle)));
  } catch (error) {
    throw new StoreWriteError(`config bundle ${bundle.bundleId} could not be written`, { cause: error });
  }
}

/**
 * Reads every stored bundle. A file that cannot be used (unreadable, e.g. a
 * directory or a dangling link; bad checksum; not a bundle; named for another
 * id) is reported by id with its problem, in words naming no host path, so
 * the rest still starts (SPEC §7) and the core keeps the id's workers from
 * running without their profile until the bundle is pushed again.
 */
export async function readConfigBundles(disk: Disk): Promise<{ bundles: ConfigBundle[]; damaged: DamagedConfigBundle[] }> {
  let names: string[];
  try {
    names = await readdir(disk.abs(BUNDLES_DIR));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return { bundles: [], damaged: [] };
    throw error;
  }
  const bundles: ConfigBundle[] = [];
  const damaged: DamagedConfigBundle[] = [];
  for (const name of names.sort()) {
    if (isTempName(name) || !name.endsWith(SUFFIX)) continue;
    const bundleId = name.slice(0, -SUFFIX.length);
    const read = await readBundleFile(disk, name, bundleId);
    if ("problem" in read) damaged.push({ bundleId, problem: read.problem });
    else bundles.push(read.bundle);
  }
  return { bundles, damaged };
}

/** One bundle file, or what is wrong with it. */
async function readBundleFile(disk: Disk, name: string, bundleId: string): Promise<{ bundle: ConfigBundle } | { problem: string }> {
  let read: Awaited<ReturnType<typeof readSnapshotFile>>;
  try {
    read = await readSnapshotFile(disk.abs(path.join(BUNDLES_DIR, name)));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? "unknown error";
    return { problem: `its file ${BUNDLES_DIR}/${name} cannot be read (${code})` };
  }
  if ("problem" in read) return { problem: `its file ${BUNDLES_DIR}/${name} cannot be read (${read.problem})` };
  const decoded = decodeSnapshot(read.content);
  if ("problem" in decoded) return { problem: decoded.problem };
  try {
    const bundle = fromBinary(ConfigBundleSchema, decoded.body);
    return bundle.bundleId === bundleId ? { bundle } : { problem: "the file holds another bundle" };
  } catch {
    return { problem: "the file is not a config bundle" };
  }
}
