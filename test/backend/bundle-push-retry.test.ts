import { Code, createRouterTransport, type Interceptor } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RuntimeHealth } from "../../gen/worker_runtime/v1/backend_pb.js";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { createBackend, type Backend } from "../../src/backend/index.js";
import { createRuntime, silentLogger } from "../../src/runtime/index.js";
import { type RuntimeServer, startRuntimeServer } from "../../src/server/index.js";
import { expectReason } from "../support/errors.js";
import { clientsFor, eventually, type Clients } from "../support/harness.js";
import { replyWith, ScriptedBackend } from "../support/scripted-backend.js";
import { bundleOf } from "../support/bundles.js";

/**
 * CreateWorker through a Backend that holds the selected bundle: the
 * Backend pushes it and forwards the create, and repeats both only when the
 * runtime says the bundle is missing. The remote runtime's server counts
 * the CreateWorker calls it serves (an interceptor on that server).
 */
let server: RuntimeServer;
let backend: Backend;
let viaBackend: Clients;
const served = new Map<string, number>();

const countCalls: Interceptor = (next) => (request) => {
  served.set(request.method.name, (served.get(request.method.name) ?? 0) + 1);
  return next(request);
};

const bundle = bundleOf({ bundleId: "team", profiles: [{ name: "helper", model: "m" }] });

beforeAll(async () => {
  const runtime = await createRuntime({ logger: silentLogger, runtimeId: "rs", executionBackend: new ScriptedBackend(replyWith("hi", 1)) });
  server = await startRuntimeServer({ runtime, host: "127.0.0.1", port: 0, logger: silentLogger, interceptors: [countCalls] });
  backend = createBackend({
    runtime: await createRuntime({ logger: silentLogger, runtimeId: "emb" }),
    logger: silentLogger,
    remotes: [{ runtimeId: "rs", url: `http://${server.h2Address}` }],
    bundles: new Map([[bundle.bundleId, bundle]]),
  });
  viaBackend = clientsFor(createRouterTransport(backend.routes));
  await eventually(() => backend.directory.get("rs")?.health === RuntimeHealth.READY, 10_000, "READY");
});

afterAll(async () => {
  backend?.close();
  await server?.close(0);
});

describe("CreateWorker of a bundle the Backend holds", () => {
  it("asks the runtime once when the profile is not in the bundle (no second push and create)", async () => {
    const selector = (profile: string) => ({
      source: { case: "bundle" as const, value: { bundleId: bundle.bundleId, digest: bundle.digest, profile } },
    });
    // The first create pushes the bundle, so the Backend knows it is there.
    await viaBackend.catalog.createWorker({ runtimeId: "rs", profile: selector("helper") });
    served.clear();
    await expectReason(
      () => viaBackend.catalog.createWorker({ runtimeId: "rs", profile: selector("nobody") }),
      Code.NotFound,
      ErrorReason.PROFILE_NOT_FOUND,
    );
    expect(served.get("CreateWorker")).toBe(1);
    expect(served.get("PutConfigBundle") ?? 0).toBe(0);
    expect(served.get("GetConfigBundle") ?? 0).toBe(0);
  });
});
