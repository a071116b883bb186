import { fromJson, type JsonValue } from "@bufbuild/protobuf";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { type ConfigBundle, ConfigBundleSchema } from "../../gen/worker_runtime/v1/profile_pb.js";
import { bundleDigest, checkBundle, RuntimeError } from "../runtime/index.js";
import { BackendConfigError } from "./backend-config.js";
import { type BundleFileRead, readBundleFileSync } from "./bundle-file.js";

/** The config bundles a Backend holds, by bundle id; read-only once loaded. */
export type BundleCatalog = ReadonlyMap<string, ConfigBundle>;

/**
 * Reads `--bundles-dir`: every `*.json` file is one ConfigBundle in proto3
 * JSON form, of at most MAX_BUNDLE_FILE_BYTES (bundle-file.ts: refused by
 * its size, before it is read). A file without a digest gets the one `bundleDigest` computes;
 * a file with one must match it, so a hand-edited bundle cannot keep a stale
 * digest. Any bad file (unreadable, not JSON, not a ConfigBundle, no id, a
 * wrong digest, content PutConfigBundle refuses, an id used twice) stops start-up with an error naming the
 * file: a Backend that silently skipped a bundle would later create workers
 * the team did not configure.
 */
export function loadBundleDir(dir: string): BundleCatalog {
  let names: string[];
  try {
    names = readdirSync(dir)
      .filter((name) => name.endsWith(".json"))
      .sort();
  } catch (error) {
    throw new BackendConfigError(`cannot read --bundles-dir: ${(error as NodeJS.ErrnoException).code ?? "error"}`);
  }
  const bundles = new Map<string, ConfigBundle>();
  const fileOf: BundleFileNames = new Map();
  for (const name of names) {
    let read: BundleFileRead;
    try {
      read = readBundleFileSync(join(dir, name), name);
    } catch (error) {
      throw new BackendConfigError(`cannot read --bundles-dir file ${name}: ${(error as NodeJS.ErrnoException).code ?? "error"}`);
    }
    if ("refused" in read) throw new BackendConfigError(read.refused);
    const bundle = parseBundleFile(name, read.text);
    const taken = idTakenElsewhere(fileOf, bundle.bundleId, name);
    if (taken !== undefined) throw new BackendConfigError(taken);
    bundles.set(bundle.bundleId, bundle);
  }
  return bundles;
}

/**
 * One `--bundles-dir` file's text as a checked bundle in canonical form, its
 * digest computed when absent; BackendConfigError naming the file and the
 * rule otherwise. Shared by the start-up load and the re-reads (bundle-dir.ts).
 */
export function parseBundleFile(name: string, text: string): ConfigBundle {
  const where = `--bundles-dir file ${name}`;
  let json: JsonValue;
  try {
    json = JSON.parse(text) as JsonValue;
  } catch {
    throw new BackendConfigError(`cannot read ${where}: not valid JSON`);
  }
  let bundle: ConfigBundle;
  try {
    bundle = fromJson(ConfigBundleSchema, json);
  } catch (error) {
    throw new BackendConfigError(`${where} is not a ConfigBundle: ${error instanceof Error ? error.message : String(error)}`);
  }
  if (bundle.bundleId === "") throw new BackendConfigError(`${where} has no bundleId`);
  const digest = bundleDigest(bundle);
  if (bundle.digest !== "" && bundle.digest !== digest) {
    throw new BackendConfigError(`${where}: digest ${bundle.digest} does not match its content (${digest})`);
  }
  bundle.digest = digest;
  try {
    // The rules PutConfigBundle applies: a bundle a runtime would refuse must not wait for a CreateWorker to say so.
    return checkBundle(bundle);
  } catch (error) {
    if (error instanceof RuntimeError) throw new BackendConfigError(`${where}: ${error.message}`);
    throw error;
  }
}

/** The files of one read of the directory, by bundle id folded to lower case: the id and its file. */
export type BundleFileNames = Map<string, { bundleId: string; file: string }>;

/**
 * Records `file`'s bundle id, or says why it cannot be (the same id, or one
 * differing only in case, which runtimes refuse, already in another file).
 */
export function idTakenElsewhere(files: BundleFileNames, bundleId: string, file: string): string | undefined {
  const folded = bundleId.toLowerCase();
  const earlier = files.get(folded);
  if (earlier === undefined) {
    files.set(folded, { bundleId, file });
    return undefined;
  }
  if (earlier.bundleId === bundleId) return `--bundles-dir file ${file}: bundle id "${bundleId}" is also in ${earlier.file}`;
  return `--bundles-dir file ${file}: bundle id "${bundleId}" differs only in case from "${earlier.bundleId}" in ${earlier.file} (runtimes refuse bundle ids that differ only in case)`;
}
