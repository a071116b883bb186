import { mkdtemp, rm } from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import type { RuntimeStore } from "../../src/runtime/index.js";
import { createMemoryStore } from "../../src/runtime/index.js";
import { createFileStore } from "../../src/store/fs/index.js";

/**
 * The stores the core behaviour suite runs against, unchanged. Each
 * factory returns a fresh, empty store and a cleanup function.
 */
export interface StoreFactory {
  name: string;
  create(): Promise<{ store: RuntimeStore; cleanup(): Promise<void> }>;
}

export const STORE_FACTORIES: StoreFactory[] = [
  {
    name: "memory",
    create: async () => ({ store: createMemoryStore(), cleanup: async () => {} }),
  },
  {
    name: "fs",
    create: async () => {
      const dataDir = await mkdtemp(path.join(os.tmpdir(), "wr-core-fs-"));
      return {
        store: createFileStore({ dataDir }),
        cleanup: () => rm(dataDir, { recursive: true, force: true }),
      };
    },
  },
];
