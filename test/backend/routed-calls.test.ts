import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RuntimeHealth } from "../../gen/worker_runtime/v1/backend_pb.js";
import { ErrorDetailSchema, ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { RuntimeRegistry } from "../../gen/worker_runtime/v1/runtime_registry_pb.js";
import { createBackend, type Backend } from "../../src/backend/index.js";
import { createRuntime, silentLogger } from "../../src/runtime/index.js";
import { clientsFor, eventually, startHarness, type Clients, type Harness } from "../support/harness.js";
import { holdOpen, replyWith, ScriptedBackend } from "../support/scripted-backend.js";

/**
 * Calls routed through a Backend (in process: a real runtime server on
 * port 0, the Backend's routes on a router transport) behave as they do
 * against the runtime: StreamInput streams the run, a runtime's typed
 * rejection arrives unchanged, RuntimeManagement is routed by runtime_id.
 */
let harness: Harness;
let backend: Backend;
let viaBackend: Clients;
const scripted = new ScriptedBackend(replyWith("hello there", 4));

beforeAll(async () => {
  harness = await startHarness({ runtimeId: "rs", executionBackend: scripted });
  backend = createBackend({
    runtime: await createRuntime({ logger: silentLogger, runtimeId: "emb" }),
    logger: silentLogger,
    remotes: [{ runtimeId: "rs", url: harness.baseUrl }],
  });
  viaBackend = clientsFor(createRouterTransport(backend.routes));
  await eventually(() => backend.directory.get("rs")?.health === RuntimeHealth.READY, 10_000, "READY");
});

afterAll(async () => {
  backend?.close();
  await harness?.close();
});

async function failure(call: Promise<unknown>): Promise<ConnectError | undefined> {
  return call.then(
    () => undefined,
    (error: unknown) => ConnectError.from(error),
  );
}

describe("calls routed through a Backend", () => {
  it("streams a run with StreamInput", async () => {
    const { worker } = await viaBackend.catalog.createWorker({ runtimeId: "rs" });
    let text = "";
    let final: RunStatus | undefined;
    for await (const message of viaBackend.interaction.streamInput({ worker: worker?.ref, input: { text: "hi" } })) {
      for (const event of message.events) {
        if (event.kind.case === "textDelta") text += event.kind.value.text;
        if (event.kind.case === "runChanged") final = event.kind.value.status;
      }
    }
    expect(text).toBe("hello there");
    expect(final).toBe(RunStatus.COMPLETED);
  });

  it("does not count a client's own StreamInput deadline against the runtime's health", async () => {
    const { worker } = await viaBackend.catalog.createWorker({ runtimeId: "rs" });
    const held = holdOpen("thinking");
    scripted.enqueue(held.script);
    const error = await failure(
      (async () => {
        for await (const _ of viaBackend.interaction.streamInput({ worker: worker?.ref, input: { text: "hi" } }, { timeoutMs: 300 })) {
          // the run is held open past the client's deadline
        }
      })(),
    );
    held.release();
    expect(error?.code).toBe(Code.DeadlineExceeded);
    await new Promise((resolve) => setTimeout(resolve, 50));
    const rs = backend.directory.get("rs");
    expect(rs?.health).toBe(RuntimeHealth.READY);
    expect(rs?.snapshot.failedAttempts).toBe(0);
  });

  it("relays a runtime's typed rejection unchanged", async () => {
    const ref = { runtimeId: "rs", workerId: "w-missing" };
    const direct = await failure(harness.connect("grpc").catalog.getWorker({ worker: ref }));
    const routed = await failure(viaBackend.catalog.getWorker({ worker: ref }));
    expect(direct?.code).toBe(Code.NotFound);
    expect(routed?.code).toBe(direct?.code);
    expect(routed?.rawMessage).toBe(direct?.rawMessage);
    expect(routed?.findDetails(ErrorDetailSchema)).toEqual(direct?.findDetails(ErrorDetailSchema));
  });

  it("refuses an unknown runtime with NOT_FOUND naming it, and a missing runtime_id with INVALID_ARGUMENT", async () => {
    const unknown = await failure(viaBackend.catalog.getWorker({ worker: { runtimeId: "nowhere", workerId: "w" } }));
    expect(unknown?.code).toBe(Code.NotFound);
    expect(unknown?.findDetails(ErrorDetailSchema)[0]).toMatchObject({
      reason: ErrorReason.NOT_FOUND,
      metadata: { runtime_id: "nowhere" },
    });
    const missing = await failure(viaBackend.catalog.createWorker({}));
    expect(missing?.code).toBe(Code.InvalidArgument);
    expect(missing?.findDetails(ErrorDetailSchema)[0]?.metadata["field"]).toBe("runtime_id");
  });

  it("names the runtimes it has when a call names one it does not, so the user sees what to type", async () => {
    const unknown = await failure(viaBackend.catalog.listWorkers({ runtimeId: "nowhere" }));
    expect(unknown?.code).toBe(Code.NotFound);
    expect(unknown?.findDetails(ErrorDetailSchema)[0]?.reason).toBe(ErrorReason.NOT_FOUND);
    expect(unknown?.rawMessage).toBe('runtime "nowhere" is not registered with this backend; it has emb, rs');
    // The watches refuse it alike, before any stream is opened.
    const watch = await failure(
      (async () => {
        for await (const _ of viaBackend.observation.watchWorker({ worker: { runtimeId: "nowhere", workerId: "w" } })) break;
      })(),
    );
    expect(watch?.rawMessage).toBe(unknown?.rawMessage);
    // And the registry, asked about it by name.
    const registry = createClient(RuntimeRegistry, createRouterTransport(backend.routes));
    const registered = await failure(registry.getRegisteredRuntime({ runtimeId: "nowhere" }));
    expect(registered?.code).toBe(Code.NotFound);
    expect(registered?.rawMessage).toBe(unknown?.rawMessage);
  });

  it("names at most 20 runtimes in that error, then how many more it has", async () => {
    // 24 remotes nobody answers for: registered all the same (never READY).
    const ids = Array.from({ length: 24 }, (_, i) => `rt-${String(i).padStart(2, "0")}`);
    const many = createBackend({
      runtime: await createRuntime({ logger: silentLogger, runtimeId: "emb" }),
      logger: silentLogger,
      remotes: ids.map((runtimeId) => ({ runtimeId, url: "http://127.0.0.1:1" })),
    });
    try {
      const unknown = await failure(clientsFor(createRouterTransport(many.routes)).catalog.listWorkers({ runtimeId: "nowhere" }));
      expect(unknown?.code).toBe(Code.NotFound);
      expect(unknown?.findDetails(ErrorDetailSchema)[0]?.reason).toBe(ErrorReason.NOT_FOUND);
      // In runtime id order, as ListRuntimes lists them: "emb" then rt-00 ... rt-18, and the other 5.
      const named = ["emb", ...ids.slice(0, 19)].join(", ");
      expect(unknown?.rawMessage).toBe(`runtime "nowhere" is not registered with this backend; it has ${named} and 5 more`);
    } finally {
      many.close();
    }
  });

  it("routes RuntimeManagement by runtime_id, empty meaning the embedded runtime", async () => {
    expect((await viaBackend.management.getRuntime({})).runtime?.runtimeId).toBe("emb");
    expect((await viaBackend.management.getRuntime({ runtimeId: "rs" })).runtime?.runtimeId).toBe("rs");
  });
});
