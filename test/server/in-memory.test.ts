import { Code, createClient, createRouterTransport } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { WorkerCatalog } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { WorkerInteraction } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import { WorkerObservation } from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import { createRuntime, silentLogger } from "../../src/runtime/index.js";
import { createErrorInterceptor, createRoutes } from "../../src/server/index.js";
import { expectReason } from "../support/errors.js";
import { ScriptedBackend, replyWith } from "../support/scripted-backend.js";

/**
 * The routes mounted on an in-process transport: the same generated clients
 * drive an embedded runtime with no socket (how a Backend reaches the
 * runtime embedded in its own process).
 */
describe("the routes on an in-memory transport", () => {
  it("serve the generated clients without a network", async () => {
    const backend = new ScriptedBackend(replyWith("in process"));
    const runtime = await createRuntime({ executionBackend: backend });
    const transport = createRouterTransport(createRoutes(runtime), {
      router: { interceptors: [createErrorInterceptor(silentLogger)] },
    });
    const catalog = createClient(WorkerCatalog, transport);
    const interaction = createClient(WorkerInteraction, transport);
    const observation = createClient(WorkerObservation, transport);

    const { worker } = await catalog.createWorker({ runtimeId: runtime.runtimeId });
    let status = RunStatus.UNSPECIFIED;
    const texts: string[] = [];
    for await (const message of interaction.streamInput({ worker: worker?.ref, input: { text: "hello" } })) {
      for (const event of message.events) {
        if (event.kind.case === "textDelta") texts.push(event.kind.value.text);
        if (event.kind.case === "runChanged") status = event.kind.value.status;
      }
    }
    expect(status).toBe(RunStatus.COMPLETED);
    expect(texts.join("")).toBe("in process");
    const transcript = await observation.readTranscript({ worker: worker?.ref });
    expect(transcript.entries).toHaveLength(2);
    await expectReason(
      () => catalog.getWorker({ worker: { runtimeId: "rt-other", workerId: worker?.ref?.workerId ?? "" } }),
      Code.InvalidArgument,
      ErrorReason.RUNTIME_MISMATCH,
    );
    await runtime.close();
  });
});
