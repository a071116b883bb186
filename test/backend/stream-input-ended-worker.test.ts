import { create } from "@bufbuild/protobuf";
import { Code, createRouterTransport } from "@connectrpc/connect";
import { afterEach, describe, expect, it } from "vitest";
import { RuntimeHealth } from "../../gen/worker_runtime/v1/backend_pb.js";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { WatchWorkerRequestSchema } from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import { createBackend } from "../../src/backend/index.js";
import { createRuntime, silentLogger } from "../../src/runtime/index.js";
import { expectError } from "../support/errors.js";
import { type Clients, clientsFor, eventually, startHarness } from "../support/harness.js";

/**
 * A StreamInput to a stopped worker whose watch slots are full must be told
 * the permanent cause (FAILED_PRECONDITION, WORKER_STOPPED; WORKER_FAILED
 * for a failed one), not RESOURCE_EXHAUSTED, which a client would retry in
 * vain: the runtime checks the worker's end before its slots. The Backend
 * has no slot check of its own for StreamInput (it relays the call), so
 * through it the runtime's answer must arrive unchanged, from a remote
 * runtime over HTTP/2 and from the embedded one, while the slots are held:
 * one by the Backend's shared upstream watch of the worker (serving both
 * watches made through the Backend), one by a watch made straight at the
 * runtime.
 */

const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

const limits = { maxWatchersPerWorker: 2 };

describe("StreamInput through a Backend to a stopped worker whose watch slots are full", () => {
  it("answers the runtime's FAILED_PRECONDITION / WORKER_STOPPED unchanged, not RESOURCE_EXHAUSTED", async () => {
    const remote = await startHarness({ runtimeId: "rs", limits });
    cleanups.push(() => remote.close());
    const embedded = await createRuntime({ logger: silentLogger, runtimeId: "emb", limits });
    const backend = createBackend({
      runtime: embedded,
      logger: silentLogger,
      remotes: [{ runtimeId: "rs", url: remote.baseUrl }],
      workerWatchLingerMs: 100,
    });
    cleanups.push(async () => backend.close());
    const viaBackend = clientsFor(createRouterTransport(backend.routes));
    await eventually(() => backend.directory.get("rs")?.health === RuntimeHealth.READY, 10_000, "READY");

    for (const runtimeId of ["rs", "emb"]) {
      const worker = (await viaBackend.catalog.createWorker({ runtimeId })).worker?.ref;
      await viaBackend.catalog.stopWorker({ worker });
      const watches = runtimeId === "rs" ? remote.runtime : embedded;
      // The Backend's own runtime-wide watch is a subscription too.
      const before = watches.stats().subscriptions;
      const held = [new AbortController(), new AbortController()];
      for (const controller of held) {
        await viaBackend.observation.watchWorker({ worker }, { signal: controller.signal })[Symbol.asyncIterator]().next();
      }
      // The Backend's two clients share one upstream watch: the second slot is a watch straight at the runtime.
      const straight = new AbortController();
      await watches.watchWorker(create(WatchWorkerRequestSchema, { worker }), { signal: straight.signal }).next();
      const streamInput = (clients: Clients) => () =>
        clients.interaction
          .streamInput({ worker, input: { text: "hi" } })
          [Symbol.asyncIterator]()
          .next();
      // The slots are full: a watch made straight at the runtime is refused.
      const watch = async () =>
        watches.watchWorker(create(WatchWorkerRequestSchema, { worker }), { signal: new AbortController().signal }).next();
      await expect(watch()).rejects.toMatchObject({
        code: Code.ResourceExhausted,
        reason: ErrorReason.LIMIT_EXCEEDED,
      });

      const { error, detail } = await expectError(streamInput(viaBackend));
      expect([error.code, detail?.reason], runtimeId).toEqual([Code.FailedPrecondition, ErrorReason.WORKER_STOPPED]);
      expect(error.rawMessage).toBe(`worker ${worker?.workerId} is stopped`);
      if (runtimeId === "rs") {
        // The same answer as the runtime gives a client that calls it directly.
        const direct = await expectError(streamInput(remote.connect("grpc")));
        expect([error.code, error.rawMessage, detail?.metadata]).toEqual([
          direct.error.code,
          direct.error.rawMessage,
          direct.detail?.metadata,
        ]);
      }
      for (const controller of [...held, straight]) controller.abort();
      await eventually(() => watches.stats().subscriptions === before, 5_000, "every watch released");
    }
    // A worker's refusal says nothing about the runtime's health.
    expect(backend.directory.get("rs")?.health).toBe(RuntimeHealth.READY);
  });
});
