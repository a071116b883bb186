import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach } from "vitest";
import { createOpenAIBackend } from "../../src/engine/index.js";
import type { Logger, Runtime } from "../../src/runtime/index.js";
import { createFileStore } from "../../src/store/fs/index.js";
import { type FakeOpenAI, startFakeOpenAI } from "./fake-openai.js";
import { type Harness, startHarness } from "./harness.js";
import { replyChunks } from "./openai-chunks.js";

/** How {@link useDamageableRuntime} serves its runtime. */
export interface DamageableRuntimeInit {
  runtimeId: string;
  /** The store's segment size, small so a few runs seal a transcript segment (default: the store's). */
  segmentBytes?: number;
  heartbeatIntervalMs?: number;
  /** The runtime's logger, made as each runtime is served (default: silent). */
  logger?: () => Logger;
}

/** A data dir whose stored history a test damages between two runtimes it serves on it. */
export interface DamageableRuntime {
  /** This test's data dir (workers' files under `workers/<id>/`). */
  readonly dir: string;
  /** This test's fake provider; a request nothing was queued for is answered "ok". */
  readonly fake: FakeOpenAI;
  /** Serves a runtime on the data dir, wired as `serve` wires it: damage a read finds quarantines that worker. */
  serve(): Promise<Harness>;
}

/**
 * The set-up the tests of damaged stored history share (quarantine,
 * transcript cut), registered as this file's beforeEach/afterEach: a fresh
 * data dir and fake provider per test, and runtimes served on the dir whose
 * store reports the damage it finds (`onCorruption`) to the runtime.
 */
export function useDamageableRuntime(tempPrefix: string, init: DamageableRuntimeInit): DamageableRuntime {
  let dir = "";
  let fake: FakeOpenAI | undefined;
  const damageable: DamageableRuntime = {
    get dir() {
      return dir;
    },
    get fake() {
      if (!fake) throw new Error("the fake provider starts in beforeEach");
      return fake;
    },
    async serve() {
      let runtime: Runtime | undefined;
      const harness = await startHarness({
        runtimeId: init.runtimeId,
        ...(init.heartbeatIntervalMs !== undefined ? { heartbeatIntervalMs: init.heartbeatIntervalMs } : {}),
        ...(init.logger ? { logger: init.logger() } : {}),
        store: createFileStore({
          dataDir: dir,
          ...(init.segmentBytes !== undefined ? { segmentBytes: init.segmentBytes } : {}),
          onCorruption: (workerId, message, detail) => runtime?.reportCorruption(workerId, message, detail),
        }),
        executionBackend: createOpenAIBackend({ apiKey: "sk-test", baseURL: damageable.fake.baseURL }),
      });
      runtime = harness.runtime;
      return harness;
    },
  };
  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), tempPrefix));
    fake = await startFakeOpenAI();
    fake.setFallback({ kind: "stream", chunks: replyChunks({ text: "ok", usage: { prompt: 1, completion: 1 } }) });
  });
  afterEach(async () => {
    await fake?.close();
    await rm(dir, { recursive: true, force: true });
  });
  return damageable;
}
