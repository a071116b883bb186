import { afterAll, beforeAll } from "vitest";
import type { Worker } from "../../gen/worker_runtime/v1/worker_pb.js";
import { startHarness, type Clients, type Harness, type HarnessOptions, type Protocol } from "./harness.js";
import type { ScriptedBackend } from "./scripted-backend.js";
import type { StoreFactory } from "./stores.js";

/** What a suite's tests use: a served runtime, clients over one protocol, its scripted backend. */
export interface RuntimeSuite {
  readonly harness: Harness;
  readonly clients: Clients;
  readonly backend: ScriptedBackend;
  /** Creates a worker with the default profile. */
  newWorker(): Promise<Worker>;
}

/**
 * Starts a runtime on a fresh store from `storeFactory` before the suite's
 * tests and closes it after them, so the core behaviour suites run
 * unchanged against every store and over every protocol.
 */
export function useRuntimeSuite(
  storeFactory: StoreFactory,
  protocol: Protocol,
  options: { backend: () => ScriptedBackend } & Omit<HarnessOptions, "store" | "executionBackend">,
): RuntimeSuite {
  let harness: Harness | undefined;
  let clients: Clients | undefined;
  let backend: ScriptedBackend | undefined;
  let cleanup = async (): Promise<void> => {};
  beforeAll(async () => {
    const created = await storeFactory.create();
    cleanup = created.cleanup;
    const { backend: makeBackend, ...harnessOptions } = options;
    backend = makeBackend();
    harness = await startHarness({ ...harnessOptions, store: created.store, executionBackend: backend });
    clients = harness.connect(protocol);
  });
  afterAll(async () => {
    await harness?.close();
    await cleanup();
  });
  const started = <T>(value: T | undefined): T => {
    if (value === undefined) throw new Error("the suite's runtime is not started");
    return value;
  };
  const suite: RuntimeSuite = {
    get harness() {
      return started(harness);
    },
    get clients() {
      return started(clients);
    },
    get backend() {
      return started(backend);
    },
    async newWorker() {
      const { worker } = await suite.clients.catalog.createWorker({ runtimeId: suite.harness.runtime.runtimeId });
      if (!worker) throw new Error("no worker");
      return worker;
    },
  };
  return suite;
}
