import { create } from "@bufbuild/protobuf";
import { mkdtemp, rm } from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { CreateWorkerRequestSchema } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { SendInputRequestSchema } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { createMemoryStore, createRuntime, RuntimeError, type RuntimeStore, StoreWriteError } from "../../src/runtime/index.js";
import { createFileStore } from "../../src/store/fs/index.js";
import { eventually } from "../support/harness.js";
import { replyWith, ScriptedBackend } from "../support/scripted-backend.js";

/**
 * Closing a runtime closes its store last, after every write the core
 * started: a run's end, the worker's snapshot and the runtime-wide events
 * that follow it. A write after the store's close is refused (the file
 * store's data dir is unlocked by then), which marked the store failing, so
 * a `serve` process drained by SIGTERM in the middle of a run exited 1 now
 * and then instead of 0 (test/deploy/container.test.ts under load).
 */

const WRITES = ["putWorker", "putRun", "appendTranscript", "appendEvents", "appendRuntimeEvents"] as const;

/**
 * A memory store whose writes take a while (runtime events longest, so that
 * the second of two close together is still queued behind the first), and
 * which refuses (and counts) every write begun after its close.
 */
function slowStore(): { store: RuntimeStore; refused: string[] } {
  const inner = createMemoryStore();
  const refused: string[] = [];
  let closed = false;
  const overrides: Record<string, unknown> = {
    close: async () => {
      closed = true;
      await inner.close();
    },
  };
  for (const name of WRITES) {
    const write = (inner[name] as (...args: unknown[]) => Promise<void>).bind(inner);
    overrides[name] = async (...args: unknown[]) => {
      if (closed) {
        refused.push(name);
        throw new StoreWriteError("store is closed");
      }
      await new Promise((resolve) => setTimeout(resolve, name === "appendRuntimeEvents" ? 80 : 5));
      return write(...args);
    };
  }
  return { store: Object.assign(Object.create(inner) as RuntimeStore, overrides), refused };
}

describe("closing a runtime", () => {
  it.each([
    ["while a run streams (the drain interrupts it)", 0],
    ["just as a run ends on its own", 1],
  ])("%s: every write the core started reaches the store before it closes", async (_name, endsFirst) => {
    const { store, refused } = slowStore();
    const backend = new ScriptedBackend(replyWith("a short answer", 2));
    const runtime = await createRuntime({ executionBackend: backend, store });
    const { worker } = await runtime.createWorker(create(CreateWorkerRequestSchema, { runtimeId: runtime.runtimeId }));
    const run = await runtime.sendInput(create(SendInputRequestSchema, { worker: worker?.ref, input: { text: "hi" } }));
    if (endsFirst) {
      // Closed the moment the run shows as ended: its record, the worker's snapshot and the events are still being written.
      await eventually(async () => (await runtime.getRun({ worker: worker?.ref, runId: run.runId })).status >= 4, 10_000, "the end");
    }
    await runtime.close();
    // A straggler would begin after close resolved: give one the time of a few slow writes to show.
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(refused).toEqual([]);
    expect(runtime.stats().storeWritesFailing).toBe(false);
  });
});

describe("a request in flight when the runtime closes", () => {
  it("CreateWorker, between its writes: it completes, and every write reaches the store before it closes", async () => {
    const { store, refused } = slowStore();
    const runtime = await createRuntime({ store });
    // Its first write (the worker's snapshot) is under way when close begins; the created event and
    // the runtime-wide workerCreated follow it.
    const created = runtime.createWorker(create(CreateWorkerRequestSchema, { runtimeId: runtime.runtimeId }));
    await runtime.close();
    expect((await created).worker?.ref?.workerId).toBeTruthy();
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(refused).toEqual([]);
    expect(runtime.stats().storeWritesFailing).toBe(false);
  });
});

describe("a request that reaches a closing runtime", () => {
  it("is refused as the runtime shutting down, and the store is not counted as failing", async () => {
    const dataDir = await mkdtemp(path.join(os.tmpdir(), "wr-close-"));
    try {
      const inner = createFileStore({ dataDir });
      let arrive: (() => Promise<unknown>) | undefined;
      let late: Promise<unknown> | undefined;
      // A StopWorker that arrives just as the store closes: the server still serves its sessions then.
      const store = Object.assign(Object.create(inner) as RuntimeStore, {
        close: async () => {
          late = arrive?.().then(
            () => "stopped",
            (error: unknown) => error,
          );
          await inner.close();
        },
      });
      const runtime = await createRuntime({ store });
      const { worker } = await runtime.createWorker(create(CreateWorkerRequestSchema, { runtimeId: runtime.runtimeId }));
      arrive = () => runtime.stopWorker({ worker: worker?.ref } as never);
      await runtime.close();
      const outcome = await late;
      expect(outcome).toBeInstanceOf(RuntimeError);
      expect((outcome as RuntimeError).reason).toBe(ErrorReason.RUNTIME_DRAINING);
      expect(runtime.stats().storeWritesFailing).toBe(false);
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
