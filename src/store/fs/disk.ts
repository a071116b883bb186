import { randomBytes } from "node:crypto";
import { link, open, rename, unlink, type FileHandle } from "node:fs/promises";
import * as path from "node:path";
import { noopMetrics, type RuntimeMetrics } from "../../runtime/index.js";

/**
 * Test-only fault injection. Each hook runs just before the store writes or
 * fsyncs a file and may throw (for example an `ENOSPC` error) to make that
 * operation fail exactly like a full disk would. `file` is relative to the
 * data dir; `bytes` is how much one write writes. `beforeSync` may instead
 * return a promise: the fsync waits for it (a slow or hung disk, held as
 * long as a test needs) and fails if it rejects. Production configurations leave this unset.
 */
export interface FileStoreFaults {
  beforeWrite?(file: string, bytes: number): void;
  beforeSync?(file: string): void | Promise<void>;
  /** Before a hard link named `file` is made: may throw as a file system without hard links does (EPERM). */
  beforeLink?(file: string): void;
}

/**
 * Every write and fsync of the file store goes through here, so that the
 * durability rules (fsync data, then the directory that names it) live in
 * one place and fault injection sees every write.
 */
export class Disk {
  constructor(
    readonly root: string,
    private readonly faults: FileStoreFaults = {},
    /** Where fsync and group-commit timings go (see group-commit.ts). */
    readonly metrics: RuntimeMetrics = noopMetrics,
  ) {}

  /** Absolute path of a data-dir-relative name. */
  abs(rel: string): string {
    return path.join(this.root, rel);
  }

  /** Writes all of `bytes` at `position`. */
  async write(fh: FileHandle, rel: string, bytes: Uint8Array, position: number): Promise<void> {
    this.faults.beforeWrite?.(rel, bytes.length);
    let done = 0;
    while (done < bytes.length) {
      const { bytesWritten } = await fh.write(bytes, done, bytes.length - done, position + done);
      done += bytesWritten;
    }
  }

  /** Makes written data durable (fdatasync: size changes are included). */
  async sync(fh: FileHandle, rel: string): Promise<void> {
    const held = this.faults.beforeSync?.(rel);
    if (held) await held;
    const started = performance.now();
    await fh.datasync();
    this.metrics.storeSynced((performance.now() - started) / 1000);
  }

  /** Makes a directory's entries (created, renamed, removed names) durable. */
  async syncDir(relDir: string): Promise<void> {
    const held = this.faults.beforeSync?.(relDir);
    if (held) await held;
    const fh = await open(this.abs(relDir), "r");
    try {
      const started = performance.now();
      await fh.sync();
      this.metrics.storeSynced((performance.now() - started) / 1000);
    } finally {
      await fh.close();
    }
  }

  /**
   * After `mkdir -p` created the data dir, `firstCreated` (absolute) being the
   * topmost directory it made: fsyncs the parent of every new directory, so
   * the data dir's own name survives a power loss, not only its contents.
   */
  async syncNewRoot(firstCreated: string): Promise<void> {
    const top = path.dirname(path.resolve(firstCreated));
    for (let dir = this.root; ; ) {
      const parent = path.dirname(dir);
      await this.syncDir(path.relative(this.root, parent));
      if (parent === top || parent === dir) break;
      dir = parent;
    }
  }

  /** Gives the file `fromRel` the name `toRel` too (a hard link); EEXIST when that name is taken. */
  async link(fromRel: string, toRel: string): Promise<void> {
    this.faults.beforeLink?.(toRel);
    await link(this.abs(fromRel), this.abs(toRel));
  }

  /**
   * Writes a file that must not exist yet and fsyncs its data; its name
   * becomes durable with the next fsync of its directory (the caller's).
   * For a file written once into a directory being built (a worker's
   * staging dir), where a temp file and rename would only add fsyncs.
   */
  async writeNewFile(rel: string, content: Uint8Array): Promise<void> {
    const fh = await open(this.abs(rel), "wx");
    try {
      await this.write(fh, rel, content, 0);
      await this.sync(fh, rel);
    } finally {
      await fh.close();
    }
  }

  /**
   * Replaces a file atomically: write a temp file in the same directory,
   * fsync it, rename it over the target, fsync the directory. A crash leaves
   * either the old or the new content, never a mix. Content given as chunks
   * is written one chunk per write, asking for the next only after the
   * previous one is written (so a lazy encoder does one chunk per turn of the
   * event loop); once `signal` is aborted, before the rename, the temp file
   * is removed, the target is left as it was, and the call rejects.
   */
  async replaceFile(rel: string, content: Uint8Array | Iterable<Uint8Array>, signal?: AbortSignal): Promise<void> {
    const tmp = `${rel}.tmp-${randomBytes(4).toString("hex")}`;
    const fh = await open(this.abs(tmp), "w");
    try {
      let position = 0;
      for (const chunk of content instanceof Uint8Array ? [content] : content) {
        signal?.throwIfAborted();
        await this.write(fh, tmp, chunk, position);
        position += chunk.length;
      }
      await this.sync(fh, tmp);
      signal?.throwIfAborted();
    } catch (error) {
      await fh.close();
      await unlink(this.abs(tmp)).catch(() => undefined);
      throw error;
    }
    await fh.close();
    try {
      await rename(this.abs(tmp), this.abs(rel));
    } catch (error) {
      await unlink(this.abs(tmp)).catch(() => undefined);
      throw error;
    }
    await this.syncDir(path.dirname(rel));
  }
}

/** True for a temp file left behind by an interrupted {@link Disk.replaceFile}. */
export function isTempName(name: string): boolean {
  return /\.tmp-[0-9a-f]{8}$/.test(name);
}

/** A Node file-system error's code (ENOENT, EACCES...), or "error" for anything without one. */
export function errorCode(error: unknown): string {
  return error instanceof Error && "code" in error && typeof error.code === "string" ? error.code : "error";
}
