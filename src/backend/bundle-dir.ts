import { createHash } from "node:crypto";
import { readdir } from "node:fs/promises";
import { join } from "node:path";
import type { ConfigBundle } from "../../gen/worker_runtime/v1/profile_pb.js";
import { type Logger, silentLogger } from "../runtime/index.js";
import { type BundleCatalog, type BundleFileNames, idTakenElsewhere, parseBundleFile } from "./bundle-catalog.js";
import { type BundleFileRead, readBundleFile } from "./bundle-file.js";

/** Least time between two re-reads of the directory, so a stream of unknown selectors cannot keep it busy. */
export const BUNDLE_DIR_REREAD_INTERVAL_MS = 1_000;
/** Most bundle versions a Backend keeps (each edit of a file adds one; none is dropped). */
export const MAX_BUNDLE_VERSIONS = 1_000;

/** Options for {@link BundleDir}. */
export interface BundleDirOptions {
  /** The bundles read at start-up (loadBundleDir: strict, any bad file stopped start-up). */
  initial: BundleCatalog;
  /** The directory to re-read; none: the bundles are fixed. */
  dir?: string;
  logger?: Logger;
  /** Least time between two re-reads (default {@link BUNDLE_DIR_REREAD_INTERVAL_MS}). */
  minIntervalMs?: number;
}

/**
 * The config bundles a Backend holds from `--bundles-dir`, kept up to date
 * while it runs. Bundles are immutable and digest-addressed, so every
 * version ever loaded is kept by `{bundle_id, digest}`: an edited file is a
 * new version beside the old, and workers created from the old one (and a
 * runtime that lost it) still find it. The directory is re-read on demand
 * (a CreateWorker naming a bundle the Backend does not hold, and SIGHUP),
 * at most once per interval; a caller always gets a read that started after
 * it asked. Unlike at start-up, a bad file found on a re-read is logged and
 * skipped (once per content): the Backend keeps serving what it holds.
 */
export class BundleDir {
  private readonly versions = new Map<string, ConfigBundle>();
  private readonly ids = new Set<string>();
  /** The last bad content reported per file name (a hash), so a file is not logged again until it changes. */
  private readonly reported = new Map<string, string>();
  private readonly minIntervalMs: number;
  private readonly logger: Logger;
  private lastStart = Number.NEGATIVE_INFINITY;
  private queued: Promise<void> | undefined;
  private running: Promise<void> | undefined;

  constructor(private readonly options: BundleDirOptions) {
    this.minIntervalMs = options.minIntervalMs ?? BUNDLE_DIR_REREAD_INTERVAL_MS;
    this.logger = options.logger ?? silentLogger;
    for (const bundle of options.initial.values()) this.add(bundle);
  }

  /** Versions held. */
  get size(): number {
    return this.versions.size;
  }

  /** The bundle with this id and digest, if held. */
  find(bundleId: string, digest: string): ConfigBundle | undefined {
    return this.versions.get(key(bundleId, digest));
  }

  /** Whether some version of this bundle id is held. */
  hasId(bundleId: string): boolean {
    return this.ids.has(bundleId);
  }

  /**
   * Re-reads the directory (no-op without one): joins a read not yet
   * started, else schedules one after the running read and the interval.
   * Never rejects; problems are logged.
   */
  refresh(): Promise<void> {
    if (this.options.dir === undefined) return Promise.resolve();
    this.queued ??= this.startWhenAllowed(this.options.dir);
    return this.queued;
  }

  private async startWhenAllowed(dir: string): Promise<void> {
    await this.running;
    const wait = this.lastStart + this.minIntervalMs - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait).unref());
    // From here on a new caller needs a read of its own: this one may have listed the directory before it asked.
    this.queued = undefined;
    this.lastStart = performance.now();
    this.running = this.readOnce(dir);
    await this.running;
  }

  private async readOnce(dir: string): Promise<void> {
    let names: string[];
    try {
      names = (await readdir(dir)).filter((name) => name.endsWith(".json")).sort();
    } catch (error) {
      this.logger.warn("cannot re-read --bundles-dir; keeping the bundles held", { code: (error as NodeJS.ErrnoException).code });
      return;
    }
    let added = 0;
    const fileOf: BundleFileNames = new Map();
    for (const name of names) {
      let read: BundleFileRead;
      try {
        read = await readBundleFile(join(dir, name), name);
      } catch (error) {
        // Removed or replaced meanwhile: the next read sees what is there.
        this.logger.warn("cannot read a --bundles-dir file; skipped", { file: name, code: (error as NodeJS.ErrnoException).code });
        continue;
      }
      if ("refused" in read) {
        this.skip(name, read.identity, read.refused);
        continue;
      }
      const text = read.text;
      let bundle: ConfigBundle;
      try {
        bundle = parseBundleFile(name, text);
      } catch (error) {
        this.skip(name, text, error instanceof Error ? error.message : String(error));
        continue;
      }
      const taken = idTakenElsewhere(fileOf, bundle.bundleId, name);
      if (taken !== undefined) {
        this.skip(name, text, taken);
        continue;
      }
      this.reported.delete(name);
      if (this.find(bundle.bundleId, bundle.digest)) continue;
      if (this.versions.size >= MAX_BUNDLE_VERSIONS) {
        this.skip(name, text, `--bundles-dir file ${name}: the Backend already holds ${MAX_BUNDLE_VERSIONS} bundle versions; restart it`);
        continue;
      }
      this.add(bundle);
      added++;
    }
    this.logger.info("re-read --bundles-dir", { files: names.length, added, held: this.versions.size });
  }

  private add(bundle: ConfigBundle): void {
    this.versions.set(key(bundle.bundleId, bundle.digest), bundle);
    this.ids.add(bundle.bundleId);
  }

  /** Logs a bad file once per content (`text`, or for a file not read, its size and time). */
  private skip(name: string, text: string, message: string): void {
    const hash = createHash("sha256").update(text).digest("hex");
    if (this.reported.get(name) === hash) return;
    this.reported.set(name, hash);
    this.logger.warn("bad --bundles-dir file skipped; the Backend keeps serving", { file: name, problem: message });
  }
}

function key(bundleId: string, digest: string): string {
  return `${bundleId}\u0000${digest}`;
}
