import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { ConnectivityState } from "../../gen/worker_runtime/v1/worker_pb.js";
import { createRuntime, type Runtime, silentLogger } from "../../src/runtime/index.js";
import { type BackendWithRemote, startBackendWithRemote } from "../support/backend-with-remote.js";
import { bundleOf } from "../support/bundles.js";
import { type FakeOpenAI, startFakeOpenAI } from "../support/fake-openai.js";
import { createFileStoreRuntime } from "../support/file-store-runtime.js";
import { runToEnd } from "../support/harness.js";
import { reply } from "../support/openai-chunks.js";

/**
 * A remote runtime whose stored copy of a bundle is damaged, behind a
 * Backend that holds the bundle: a CreateWorker through the Backend pushes
 * the bundle again (the runtime's GetConfigBundle tells it the copy is
 * damaged), which heals it, so the new worker is created and the old ones
 * on the bundle run again.
 */

let dir: string | undefined;
let fake: FakeOpenAI | undefined;
let served: BackendWithRemote | undefined;

afterEach(async () => {
  await served?.close();
  await fake?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
  served = undefined;
  fake = undefined;
  dir = undefined;
});

const bundle = bundleOf({ bundleId: "team", profiles: [{ name: "helper", model: "gpt-test" }] });
const select = { source: { case: "bundle" as const, value: { bundleId: "team", digest: bundle.digest, profile: "helper" } } };

describe("a Backend creating a worker on a runtime whose copy of the bundle is damaged", () => {
  it("pushes the bundle again, which heals it: the new worker is created and the old one runs again", async () => {
    const tmp = await mkdtemp(path.join(tmpdir(), "wr-bundle-heal-"));
    dir = tmp;
    const provider = await startFakeOpenAI();
    fake = provider;
    const remote = (): Promise<Runtime> =>
      createFileStoreRuntime({
        runtimeId: "rs",
        dir: tmp,
        providerBaseURL: provider.baseURL,
        heartbeatIntervalMs: 1_000,
        segmentBytes: 64 * 1024,
      });
    const first = await remote();
    await first.putConfigBundle({ bundle });
    const old = (await first.createWorker({ runtimeId: "rs", profile: select })).worker?.ref;
    await first.close();
    const file = path.join(tmp, "rs", "bundles", "team.bundle");
    const bytes = await readFile(file);
    bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 0xff;
    await writeFile(file, bytes);

    served = await startBackendWithRemote({
      embedded: await createRuntime({ logger: silentLogger, runtimeId: "emb" }),
      remote: await remote(),
      backend: { bundles: new Map([["team", bundle]]) },
    });
    const direct = served.remoteClients("grpc");
    expect((await direct.catalog.getWorker({ worker: old })).worker?.connectivity?.state).toBe(ConnectivityState.NOT_CONNECTED);

    const created = (await served.clients("grpc").catalog.createWorker({ runtimeId: "rs", profile: select })).worker;
    expect(created?.ref?.runtimeId).toBe("rs");
    expect((await direct.management.getConfigBundle({ bundleId: "team" })).bundle?.digest).toBe(bundle.digest);
    expect((await direct.catalog.getWorker({ worker: old })).worker?.connectivity?.state).toBe(ConnectivityState.CONNECTED);
    provider.enqueue(reply({ text: "healed" }));
    if (!old) throw new Error("no worker");
    expect((await runToEnd(direct, old, "hi"))?.status).toBe(RunStatus.COMPLETED);
  }, 30_000);
});
