import type { RuntimeStore } from "../../src/runtime/index.js";
import { createMemoryStore } from "../../src/runtime/index.js";

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
];
