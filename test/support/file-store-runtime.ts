import path from "node:path";
import { createOpenAIBackend } from "../../src/engine/index.js";
import { createRuntime, type Runtime, silentLogger } from "../../src/runtime/index.js";
import { createFileStore } from "../../src/store/fs/index.js";

/** What {@link createFileStoreRuntime} builds: which runtime, where it keeps its state, which provider it calls. */
export interface FileStoreRuntimeInit {
  /** The runtime's id; its state is kept in `<dir>/<runtimeId>`, so reopening the same id reopens the same store. */
  runtimeId: string;
  /** The test's temp directory, shared by every runtime of the test. */
  dir: string;
  /** The fake provider's base URL (test/support/fake-openai.ts). */
  providerBaseURL: string;
  heartbeatIntervalMs: number;
  /** Small segments, so a worker's first transcript segment is sealed (and read only on demand) after a few runs. */
  segmentBytes: number;
}

/**
 * A file-store runtime wired as `serve` wires it: damage a read finds in a
 * worker's log quarantines that worker (the store's `onCorruption` reports
 * it to the runtime). For the Backend tests that damage a worker's stored
 * history, then serve the runtime (as the remote or the embedded one of
 * backend-with-remote.ts) and compare what the Backend shows with what the
 * runtime does.
 */
export async function createFileStoreRuntime(init: FileStoreRuntimeInit): Promise<Runtime> {
  let runtime: Runtime | undefined;
  runtime = await createRuntime({
    logger: silentLogger,
    runtimeId: init.runtimeId,
    heartbeatIntervalMs: init.heartbeatIntervalMs,
    store: createFileStore({
      dataDir: path.join(init.dir, init.runtimeId),
      segmentBytes: init.segmentBytes,
      onCorruption: (workerId, message) => runtime?.reportCorruption(workerId, message),
    }),
    executionBackend: createOpenAIBackend({ apiKey: "sk-test", baseURL: init.providerBaseURL }),
  });
  return runtime;
}
