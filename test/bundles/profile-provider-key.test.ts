import { create } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { mkdtemp, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import type { ConfigBundle } from "../../gen/worker_runtime/v1/profile_pb.js";
import { type Run, RunSchema, RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { ConnectivityState } from "../../gen/worker_runtime/v1/worker_pb.js";
import { createOpenAIBackend, NO_KEY_FOR_BASE_URL_REASON } from "../../src/engine/index.js";
import { silentLogger } from "../../src/runtime/index.js";
import { createFileStore } from "../../src/store/fs/index.js";
import { expectReason } from "../support/errors.js";
import { startFakeOpenAI, type FakeOpenAI } from "../support/fake-openai.js";
import { type Clients, type Harness, startHarness } from "../support/harness.js";
import { errorReply, reply } from "../support/openai-chunks.js";
import { bundleOf } from "../support/bundles.js";
import { closeTestResources } from "../support/test-resources.js";

/**
 * A runtime with no provider key of its own (no OPENAI_API_KEY) whose host
 * holds a key for one bundle profile (provider_api_key_secret): workers of
 * that profile are CONNECTED and run with that key, before and after a
 * restart; every other worker is NOT_CONNECTED with the usual reason.
 */
const PROFILE_KEY = "profile-key-0c7d2e-never-shown";

function keyedBundle(): ConfigBundle {
  return bundleOf({
    bundleId: "keyed",
    profiles: [
      { name: "own-key", model: "gpt-test", secretNames: ["TEAM_KEY"], providerApiKeySecret: "TEAM_KEY" },
      { name: "no-key", model: "gpt-test" },
    ],
  });
}

let dir: string | undefined;
let h: Harness | undefined;
let fake: FakeOpenAI | undefined;

afterEach(async () => {
  await closeTestResources(h, fake, dir);
  h = undefined;
  fake = undefined;
  dir = undefined;
});

/** The runtime's own key, when a test gives it one. */
const RUNTIME_KEY = "sk-runtime-key-4b1f9a-never-shown";

function start(dataDir: string, provider: FakeOpenAI, apiKey?: string): Promise<Harness> {
  return startHarness({
    logger: silentLogger,
    runtimeId: "rt-keys",
    store: createFileStore({ dataDir }),
    // The provider's URL is configured, its key is not (unless given): only a profile's own key can reach it.
    executionBackend: createOpenAIBackend({ baseURL: provider.baseURL, ...(apiKey ? { apiKey } : {}) }),
    secrets: new Map([["TEAM_KEY", PROFILE_KEY]]),
  });
}

async function waitForRun(c: Clients, worker: WorkerRef | undefined, runId: string): Promise<Run> {
  for (;;) {
    const run = (await c.interaction.getRun({ worker, runId })).run ?? create(RunSchema);
    if (run.status === RunStatus.COMPLETED || run.status === RunStatus.FAILED || run.status === RunStatus.CANCELLED) return run;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe("a bundle profile with its own provider key on a runtime without one", () => {
  it("is CONNECTED and runs with its key, across a restart; other workers stay NOT_CONNECTED", async () => {
    dir = await mkdtemp(join(tmpdir(), "profile-key-"));
    fake = await startFakeOpenAI();
    h = await start(dir, fake);
    let c = h.connect("grpc");
    const bundle = keyedBundle();
    await c.management.putConfigBundle({ bundle });
    const select = (profile: string) => ({
      source: { case: "bundle" as const, value: { bundleId: bundle.bundleId, digest: bundle.digest, profile } },
    });

    const keyed = (await c.catalog.createWorker({ runtimeId: "rt-keys", profile: select("own-key") })).worker;
    expect(keyed?.connectivity?.state).toBe(ConnectivityState.CONNECTED);
    fake.enqueue(reply({ text: "hello with the profile's key" }));
    const sent = await c.interaction.sendInput({ worker: keyed?.ref, input: { text: "hi" } });
    expect((await waitForRun(c, keyed?.ref, sent.run?.runId ?? "")).status).toBe(RunStatus.COMPLETED);
    expect(fake.requests[0]?.headers.authorization).toBe(`Bearer ${PROFILE_KEY}`);

    // Without a key of their own, workers get the runtime's refusal (a base URL is set, the key is not).
    for (const profile of [undefined, select("no-key")]) {
      const plain = (await c.catalog.createWorker({ runtimeId: "rt-keys", ...(profile ? { profile } : {}) })).worker;
      expect(plain?.connectivity?.state).toBe(ConnectivityState.NOT_CONNECTED);
      expect(plain?.connectivity?.reason).toBe(NO_KEY_FOR_BASE_URL_REASON);
      const detail = await expectReason(
        () => c.interaction.sendInput({ worker: plain?.ref, input: { text: "hi" } }),
        Code.FailedPrecondition,
        ErrorReason.WORKER_NOT_CONNECTED,
      );
      expect(detail.metadata.reason).toBe(NO_KEY_FOR_BASE_URL_REASON);
    }
    // The runtime's own provider is still reported missing: builtin profiles cannot run.
    const capabilities = (await c.management.getRuntime({})).runtime?.capabilities;
    expect(capabilities?.executionAvailable).toBe(false);
    expect(capabilities?.executionUnavailableReason).toBe(NO_KEY_FOR_BASE_URL_REASON);

    // A restarted runtime restores the keyed worker CONNECTED.
    await h.close();
    await h.runtime.close();
    h = await start(dir, fake);
    c = h.connect("grpc");
    const restored = (await c.catalog.getWorker({ worker: keyed?.ref })).worker;
    expect(restored?.connectivity?.state).toBe(ConnectivityState.CONNECTED);
    fake.enqueue(reply({ text: "again" }));
    const again = await c.interaction.sendInput({ worker: keyed?.ref, input: { text: "again" } });
    expect((await waitForRun(c, keyed?.ref, again.run?.runId ?? "")).status).toBe(RunStatus.COMPLETED);
    expect(fake.requests[1]?.headers.authorization).toBe(`Bearer ${PROFILE_KEY}`);
  }, 30_000);

  it("is not run by its own key while its stored bundle is damaged, and reconnects when the bundle is pushed again", async () => {
    dir = await mkdtemp(join(tmpdir(), "profile-key-"));
    fake = await startFakeOpenAI();
    h = await start(dir, fake);
    const bundle = keyedBundle();
    await h.connect("grpc").management.putConfigBundle({ bundle });
    const select = { source: { case: "bundle" as const, value: { bundleId: bundle.bundleId, digest: bundle.digest, profile: "own-key" } } };
    const keyed = (await h.connect("grpc").catalog.createWorker({ runtimeId: "rt-keys", profile: select })).worker;
    expect(keyed?.connectivity?.state).toBe(ConnectivityState.CONNECTED);

    await h.close();
    await h.runtime.close();
    const file = join(dir, "bundles", "keyed.bundle");
    const bytes = await readFile(file);
    bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 0xff;
    await writeFile(file, bytes);
    h = await start(dir, fake);
    const c = h.connect("grpc");

    // The profile's key does not make a worker of a damaged bundle runnable.
    const shown = (await c.catalog.getWorker({ worker: keyed?.ref })).worker;
    expect(shown?.connectivity?.state).toBe(ConnectivityState.NOT_CONNECTED);
    expect(shown?.connectivity?.reason).toContain('config bundle "keyed"');
    await expectReason(
      () => c.interaction.sendInput({ worker: keyed?.ref, input: { text: "hi" } }),
      Code.FailedPrecondition,
      ErrorReason.BUNDLE_UNAVAILABLE,
    );
    expect(fake.requests).toHaveLength(0);

    // Pushed again, it is connected through its own key, though the runtime still has none.
    await c.management.putConfigBundle({ bundle });
    expect((await c.catalog.getWorker({ worker: keyed?.ref })).worker?.connectivity?.state).toBe(ConnectivityState.CONNECTED);
    fake.enqueue(reply({ text: "healed" }));
    const sent = await c.interaction.sendInput({ worker: keyed?.ref, input: { text: "hi" } });
    expect((await waitForRun(c, keyed?.ref, sent.run?.runId ?? "")).status).toBe(RunStatus.COMPLETED);
    expect(fake.requests[0]?.headers.authorization).toBe(`Bearer ${PROFILE_KEY}`);
  }, 30_000);

  it("a refused key is named by whose it is (the profile's and bundle's, or the runtime's), never by its value", async () => {
    dir = await mkdtemp(join(tmpdir(), "profile-key-"));
    fake = await startFakeOpenAI();
    h = await start(dir, fake, RUNTIME_KEY);
    const c = h.connect("grpc");
    const bundle = keyedBundle();
    await c.management.putConfigBundle({ bundle });
    const select = (profile: string) => ({
      source: { case: "bundle" as const, value: { bundleId: bundle.bundleId, digest: bundle.digest, profile } },
    });
    const refusedRun = async (profile: ReturnType<typeof select>, echoed: string): Promise<Run> => {
      const worker = (await c.catalog.createWorker({ runtimeId: "rt-keys", profile })).worker;
      fake?.enqueue(errorReply(401, `Incorrect API key provided: ${echoed}.`));
      const sent = await c.interaction.sendInput({ worker: worker?.ref, input: { text: "hi" } });
      const run = await waitForRun(c, worker?.ref, sent.run?.runId ?? "");
      expect(run.status).toBe(RunStatus.FAILED);
      expect(run.error?.reason).toBe(ErrorReason.PROVIDER_AUTH_FAILED);
      return run;
    };
    const authDiagnostic = async () =>
      (await c.management.listDiagnostics({})).diagnostics.find((d) => d.code === "provider.auth_failed")?.message ?? "";

    const own = await refusedRun(select("own-key"), PROFILE_KEY);
    expect(own.error?.message).toContain('profile "own-key" of config bundle "keyed"');
    expect(own.error?.message).toContain("TEAM_KEY");
    expect(own.error?.metadata).toMatchObject({ key_source: "profile", profile: "own-key", bundle_id: "keyed", secret_name: "TEAM_KEY" });
    expect(await authDiagnostic()).toContain('profile "own-key" of config bundle "keyed"');

    const runtimes = await refusedRun(select("no-key"), RUNTIME_KEY);
    expect(runtimes.error?.message).toContain("the runtime's provider key");
    expect(runtimes.error?.message).not.toContain("own-key");
    expect(runtimes.error?.metadata).toMatchObject({ key_source: "runtime" });
    expect(await authDiagnostic()).toContain("the runtime's provider key");

    for (const text of [own.error?.message, JSON.stringify(own.error?.metadata), runtimes.error?.message, await authDiagnostic()]) {
      expect(text).not.toContain(PROFILE_KEY);
      expect(text).not.toContain(RUNTIME_KEY);
    }
    expect(fake.requests.map((r) => r.headers.authorization)).toEqual([`Bearer ${PROFILE_KEY}`, `Bearer ${RUNTIME_KEY}`]);
  }, 30_000);
});
