import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { afterEach, describe, expect, it } from "vitest";
import { ErrorDetailSchema, ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { createRuntime, silentLogger } from "../../src/runtime/index.js";
import { type BackendWithRemote, startBackendWithRemote } from "../support/backend-with-remote.js";
import { holdOpen, ScriptedBackend } from "../support/scripted-backend.js";

/**
 * A Backend that shuts down cuts the calls it relays to remote runtimes. The
 * client must hear that the Backend is going away (RUNTIME_DRAINING: try
 * again, through it when it is back or through another), not that the
 * runtime is unavailable: the runtime is healthy and the run goes on there.
 */

let served: BackendWithRemote | undefined;

afterEach(async () => {
  await served?.close();
  served = undefined;
});

/** Holds every GetRun at the remote until its caller gives up, and says when one is held. */
let getRunHeld: () => void = () => {};
const holdGetRun: Interceptor = (next) => async (request) => {
  if (request.method.name !== "GetRun") return next(request);
  getRunHeld();
  await new Promise((resolve) => request.signal.addEventListener("abort", resolve, { once: true }));
  throw new ConnectError("the caller gave up", Code.Canceled);
};

describe("a Backend shutting down", () => {
  it("ends a unary call it relays with RUNTIME_DRAINING naming the backend", async () => {
    served = await startBackendWithRemote({
      remote: await createRuntime({ logger: silentLogger, runtimeId: "rs" }),
      remoteServer: { interceptors: [holdGetRun] },
      embedded: await createRuntime({ logger: silentLogger, runtimeId: "emb" }),
    });
    const via = served.clients("grpc");
    const { worker } = await via.catalog.createWorker({ runtimeId: "rs" });
    const held = new Promise<void>((resolve) => (getRunHeld = resolve));
    const answer = via.interaction.getRun({ worker: worker?.ref, runId: "run-x" }).then(() => undefined, ConnectError.from);
    await held;
    served.backend.close();
    const error = await answer;
    expect(error?.code).toBe(Code.Unavailable);
    expect(error?.findDetails(ErrorDetailSchema)[0]?.reason).toBe(ErrorReason.RUNTIME_DRAINING);
    expect(error?.rawMessage).toMatch(/^the backend is shutting down; runtime rs was not affected/);
  }, 30_000);

  it("ends a relayed StreamInput with RUNTIME_DRAINING naming the backend, while the run goes on in its runtime", async () => {
    const held = holdOpen("partial answer");
    served = await startBackendWithRemote({
      remote: await createRuntime({ logger: silentLogger, runtimeId: "rs", executionBackend: new ScriptedBackend().enqueue(held.script) }),
      embedded: await createRuntime({ logger: silentLogger, runtimeId: "emb" }),
    });
    const via = served.clients("grpc");
    const { worker } = await via.catalog.createWorker({ runtimeId: "rs" });

    let runId = "";
    const ended = (async () => {
      try {
        for await (const message of via.interaction.streamInput({ worker: worker?.ref, input: { text: "hello" } })) {
          if (message.run?.runId) runId = message.run.runId;
        }
        return undefined;
      } catch (error) {
        return ConnectError.from(error);
      }
    })();
    await held.started;
    served.backend.close();
    const error = await ended;

    expect(error?.code).toBe(Code.Unavailable);
    expect(error?.findDetails(ErrorDetailSchema)[0]?.reason).toBe(ErrorReason.RUNTIME_DRAINING);
    expect(error?.rawMessage).toMatch(/^the backend is shutting down; runtime rs was not affected/);
    // The runtime itself was never away: the run is still going on there.
    expect(runId).not.toBe("");
    const { run } = await served.remoteClients("grpc").interaction.getRun({ worker: worker?.ref, runId });
    expect(run?.status).toBe(RunStatus.RUNNING);
    held.release();
  }, 30_000);
});
