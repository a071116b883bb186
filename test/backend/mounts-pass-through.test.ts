import { Code } from "@connectrpc/connect";
import { createRouterTransport } from "@connectrpc/connect";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RuntimeHealth } from "../../gen/worker_runtime/v1/backend_pb.js";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { createBackend, type Backend } from "../../src/backend/index.js";
import { createRuntime, silentLogger } from "../../src/runtime/index.js";
import { expectReason } from "../support/errors.js";
import { clientsFor, eventually, startHarness, type Clients, type Harness } from "../support/harness.js";
import { ScriptedBackend } from "../support/scripted-backend.js";

/**
 * A CreateWorker with mounts sent through a Backend reaches the runtime
 * unchanged (the Backend relays requests, it does not rebuild them), and the
 * runtime's refusal of a bad mount comes back with the field it names.
 */
let dir: string;
let harness: Harness;
let backend: Backend;
let viaBackend: Clients;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "backend-mounts-"));
  harness = await startHarness({
    runtimeId: "rm",
    executionBackend: new ScriptedBackend(),
    workspaceRoots: { work: join(dir, "work"), data: join(dir, "data"), more: join(dir, "more") },
  });
  backend = createBackend({
    runtime: await createRuntime({ logger: silentLogger, runtimeId: "emb" }),
    logger: silentLogger,
    remotes: [{ runtimeId: "rm", url: harness.baseUrl }],
  });
  viaBackend = clientsFor(createRouterTransport(backend.routes));
  await eventually(() => backend.directory.get("rm")?.health === RuntimeHealth.READY, 10_000, "READY");
});

afterAll(async () => {
  backend?.close();
  await harness?.close();
  await rm(dir, { recursive: true, force: true });
});

describe("mounts through a Backend", () => {
  it("reach the runtime unchanged, and a refusal names the mount's field", async () => {
    const mounts = [
      { root: "data", path: "shared/docs", name: "docs", writable: false },
      // A whole root (empty path): another root's, as one worker's mounts may not overlap.
      { root: "more", path: "", name: "all.v2", writable: false },
    ];
    const { worker } = await viaBackend.catalog.createWorker({ runtimeId: "rm", workspace: { root: "work", path: "p" }, mounts });
    const onRuntime = harness.runtime.getWorker({ worker: worker?.ref });
    const plain = (list: typeof mounts) => list.map(({ root, path, name, writable }) => ({ root, path, name, writable }));
    expect(plain(onRuntime?.mounts ?? [])).toEqual(mounts);
    expect(plain(worker?.mounts ?? [])).toEqual(mounts);
    const detail = await expectReason(
      () =>
        viaBackend.catalog.createWorker({
          runtimeId: "rm",
          workspace: { root: "work", path: "q" },
          mounts: [{ root: "data", path: "x", name: "Not/A/Name" }],
        }),
      Code.InvalidArgument,
      ErrorReason.INVALID_ARGUMENT,
    );
    expect(detail.metadata.field).toBe("mounts[0].name");
  });
});
