import { readdir, stat } from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createMemoryStore, createRuntime, type Runtime, silentLogger } from "../../src/runtime/index.js";
import { createFileStore, type FileStore, type FileStoreOptions } from "../../src/store/fs/index.js";
import { RUNTIME_EVENTS_DIR } from "../../src/store/fs/layout.js";
import { tempDataDir } from "./fs-support.js";

/**
 * The runtime's limits are the one place event retention is set: a file
 * store given none of its own keeps what the runtime's `eventRetentionBytes`
 * says (so `serve`, which passes only limits, and an embedder who does the
 * same get one retention), while an explicit store option still wins.
 */

let dir: string;
let cleanup: () => Promise<void>;
const opened: Runtime[] = [];
beforeEach(async () => ({ dir, cleanup } = await tempDataDir()));
afterEach(async () => {
  for (const runtime of opened.splice(0)) await runtime.close();
  await cleanup();
});

const SEGMENT_BYTES = 16 * 1024;
const RETENTION_BYTES = 64 * 1024;

/** A runtime on a file store under `dir`, limited to 64 KiB messages and (unless the store says otherwise) 64 KiB of retained events. */
async function runtimeWith(storeOptions: Partial<FileStoreOptions>): Promise<{ runtime: Runtime; store: FileStore }> {
  const store = createFileStore({ dataDir: dir, segmentBytes: SEGMENT_BYTES, ...storeOptions });
  const runtime = await createRuntime({
    logger: silentLogger,
    store,
    limits: { maxMessageBytes: RETENTION_BYTES, eventRetentionBytes: RETENTION_BYTES },
  });
  opened.push(runtime);
  return { runtime, store };
}

/** Creates workers whose 4 KiB intents make each runtime-wide event about that large: over 300 KiB of events in all. */
async function fillRuntimeEvents(runtime: Runtime): Promise<void> {
  for (let i = 0; i < 80; i++) {
    await runtime.createWorker({
      runtimeId: runtime.runtimeId,
      profile: { source: { case: "builtin", value: "companion" } },
      intent: `${i}`.padEnd(4000, "x"),
    });
  }
}

async function directoryBytes(directory: string): Promise<number> {
  let total = 0;
  for (const name of await readdir(directory)) total += (await stat(path.join(directory, name))).size;
  return total;
}

describe("file store retention from the runtime's limits", () => {
  it("drops old segments once the runtime's eventRetentionBytes is passed, with no store option", async () => {
    const { runtime, store } = await runtimeWith({});
    await fillRuntimeEvents(runtime);
    expect(store.earliestRuntimeEventSeq()).toBeGreaterThan(1n);
    const onDisk = await directoryBytes(path.join(dir, RUNTIME_EVENTS_DIR));
    expect(onDisk).toBeLessThanOrEqual(RETENTION_BYTES + SEGMENT_BYTES + 8 * 1024);
  });

  it("keeps what an explicit store option says over the runtime's limit", async () => {
    const { runtime, store } = await runtimeWith({ eventRetentionBytes: 4 * 1024 * 1024 });
    await fillRuntimeEvents(runtime);
    expect(store.earliestRuntimeEventSeq()).toBe(1n);
  });

  it("a memory store passed in without options follows the runtime's limits too", async () => {
    const store = createMemoryStore();
    const runtime = await createRuntime({
      logger: silentLogger,
      store,
      limits: { maxMessageBytes: RETENTION_BYTES, eventRetentionBytes: RETENTION_BYTES },
    });
    opened.push(runtime);
    await fillRuntimeEvents(runtime);
    expect(store.earliestRuntimeEventSeq()).toBeGreaterThan(1n);
  });
});
