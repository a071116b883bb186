import { createMemoryStore } from "../../src/runtime/memory-store.js";
import type { RuntimeStore } from "../../src/runtime/store.js";
import { createFileStore } from "../../src/store/fs/index.js";
import { CONTRACT_RUNTIME_ID, describeStoreContract, type ContractStoreOptions } from "../support/store-contract.js";
import { tempDataDir } from "./fs-support.js";

const openInit = { runtimeId: CONTRACT_RUNTIME_ID, generateRuntimeId: () => "rt-unexpected" };

describeStoreContract({
  name: "memory",
  durable: false,
  open: async (options: ContractStoreOptions) => {
    const store = createMemoryStore(options);
    const opened = await store.open(openInit);
    return { store, opened, cleanup: () => store.close() };
  },
});

describeStoreContract({
  name: "file",
  durable: true,
  open: async (options: ContractStoreOptions) => {
    const { dir, cleanup } = await tempDataDir();
    // Small segments, so reads and retention cross segment files.
    const make = (): RuntimeStore => createFileStore({ dataDir: dir, segmentBytes: 256, ...options });
    let store = make();
    const opened = await store.open(openInit);
    return {
      store,
      opened,
      reopen: async (runtimeId = CONTRACT_RUNTIME_ID) => {
        await store.close();
        store = make();
        return { store, opened: await store.open({ ...openInit, runtimeId }) };
      },
      cleanup: async () => {
        await store.close();
        await cleanup();
      },
    };
  },
});
