import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { mkdir, readdir, readFile } from "node:fs/promises";
import * as path from "node:path";
import { type ConfigBundle, ConfigBundleSchema } from "../../../gen/worker_runtime/v1/profile_pb.js";
import { DiagnosticSeverity } from "../../../gen/worker_runtime/v1/runtime_pb.js";
import { type StoreDiagnostic, StoreWriteError } from "../../runtime/index.js";
import { type Disk, isTempName } from "./disk.js";
import { decodeSnapshot, encodeSnapshot } from "./snapshot-file.js";

/**
 * Config bundles on disk: `bundles/<id>.bundle`, one checksummed snapshot
 * frame (snapshot-file.ts) holding the canonical bundle's protobuf bytes,
 * replaced atomically like worker snapshots. Bundle ids are checked by the
 * core ([A-Za-z0-9._-], never "." or ".."), so they are safe file names.
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
 * Reads every stored bundle. A damaged file (bad checksum, not a bundle,
 * named for another id) is left out with an ERROR diagnostic: workers
 * created from it then run without its profile, and pushing it again
 * restores it.
 */
export async function readConfigBundles(disk: Disk): Promise<{ bundles: ConfigBundle[]; diagnostics: StoreDiagnostic[] }> {
  let names: string[];
  try {
    names = await readdir(disk.abs(BUNDLES_DIR));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return { bundles: [], diagnostics: [] };
    throw error;
  }
  const bundles: ConfigBundle[] = [];
  const diagnostics: StoreDiagnostic[] = [];
  for (const name of names.sort()) {
    if (isTempName(name) || !name.endsWith(SUFFIX)) continue;
    const id = name.slice(0, -SUFFIX.length);
    const decoded = decodeSnapshot(await readFile(disk.abs(path.join(BUNDLES_DIR, name))));
    let problem = "problem" in decoded ? decoded.problem : undefined;
    if (!("problem" in decoded)) {
      try {
        const bundle = fromBinary(ConfigBundleSchema, decoded.body);
        if (bundle.bundleId === id) bundles.push(bundle);
        else problem = "the file holds another bundle";
      } catch {
        problem = "the file is not a config bundle";
      }
    }
    if (problem !== undefined) {
      diagnostics.push({
        severity: DiagnosticSeverity.ERROR,
        code: "store.bundle_damaged",
        message: `config bundle ${id} is damaged: ${problem}; push it again`,
      });
    }
  }
  return { bundles, diagnostics };
}
