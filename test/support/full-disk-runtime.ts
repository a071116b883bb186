import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach } from "vitest";
import { createOpenAIBackend } from "../../src/engine/index.js";
import { createFileStore, type FileStoreFaults } from "../../src/store/fs/index.js";
import { type FakeOpenAI, startFakeOpenAI } from "./fake-openai.js";
import { type Clients, type Harness, startHarness } from "./harness.js";
import { replyChunks } from "./openai-chunks.js";

/** A file-store runtime whose disk a test fills: see {@link useFullDisk}. */
export interface FullDisk {
  /** This test's fake provider; a request nothing was queued for is answered "ok". */
  readonly fake: FakeOpenAI;
  /** While set (ENOSPC, EROFS), every write of the store fails with that code, as a full or read-only disk's does. */
  full: string | undefined;
  /** Serves a runtime (id "rf", quick heartbeats and store probes) on this test's data dir, and gRPC clients of it. */
  serve(): Promise<{ harness: Harness; clients: Clients }>;
}

/**
 * The set-up the full-disk watcher tests share (the worker streams' and the
 * runtime-wide stream's), registered as this file's beforeEach/afterEach:
 * a fresh data dir and fake provider per test, and a disk that takes writes
 * until the test sets `full`. `fault` adds a test's own narrower fault (it
 * may throw for some files only).
 */
export function useFullDisk(tempPrefix: string, fault?: (file: string) => void): FullDisk {
  let dir = "";
  let fake: FakeOpenAI | undefined;
  const faults: FileStoreFaults = {
    beforeWrite: (file) => {
      if (disk.full) throw Object.assign(new Error(`fault: ${disk.full}`), { code: disk.full });
      fault?.(file);
    },
  };
  const disk: FullDisk = {
    get fake() {
      if (!fake) throw new Error("the fake provider starts in beforeEach");
      return fake;
    },
    full: undefined,
    async serve() {
      const harness = await startHarness({
        runtimeId: "rf",
        heartbeatIntervalMs: 100,
        storeProbeIntervalMs: 50,
        store: createFileStore({ dataDir: dir, faults }),
        executionBackend: createOpenAIBackend({ apiKey: "sk-test", baseURL: disk.fake.baseURL }),
      });
      return { harness, clients: harness.connect("grpc") };
    },
  };
  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), tempPrefix));
    fake = await startFakeOpenAI();
    fake.setFallback({ kind: "stream", chunks: replyChunks({ text: "ok", usage: { prompt: 1, completion: 1 } }) });
    disk.full = undefined;
  });
  afterEach(async () => {
    disk.full = undefined;
    await fake?.close();
    await rm(dir, { recursive: true, force: true });
  });
  return disk;
}
