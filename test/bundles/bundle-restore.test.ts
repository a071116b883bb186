import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { type ConfigBundle, ConfigBundleSchema } from "../../gen/worker_runtime/v1/profile_pb.js";
import { type Run, RunSchema, RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { ConnectivityState, WorkerSchema, WorkerStatus } from "../../gen/worker_runtime/v1/worker_pb.js";
import { createOpenAIBackend } from "../../src/engine/index.js";
import { bundleDigest } from "../../src/runtime/bundle-digest.js";
import { createRuntime, RuntimeError } from "../../src/runtime/index.js";
import { createFileStore } from "../../src/store/fs/index.js";
import { decodeSnapshot, encodeSnapshot } from "../../src/store/fs/snapshot-file.js";
import { expectError, expectReason } from "../support/errors.js";
import { startFakeOpenAI, type FakeOpenAI } from "../support/fake-openai.js";
import { reply } from "../support/openai-chunks.js";
import { type Clients, type Harness, startHarness } from "../support/harness.js";
import { bundleOf } from "../support/bundles.js";
import { closeTestResources } from "../support/test-resources.js";

/**
 * Stored config bundles that cannot be served after a restart (damaged,
 * unreadable, or breaking a rule added since they were stored): their
 * workers must not run on anything but their profile, and the rest starts.
 */

const TEAM_KEY_VALUE = "team-key-0c4e7d2b";
const RUNTIME_KEY = "runtime-own-key";

const teamBundle = (): ConfigBundle =>
  bundleOf({
    bundleId: "team",
    profiles: [
      {
        name: "coder",
        model: "team-model",
        systemPrompt: "TEAM PROMPT",
        maxTurns: 3,
        secretNames: ["TEAM_KEY"],
        providerApiKeySecret: "TEAM_KEY",
      },
    ],
  });

const bundleRef = (bundle: ConfigBundle, profile = "coder") => ({
  source: { case: "bundle" as const, value: { bundleId: bundle.bundleId, digest: bundle.digest, profile } },
});

describe("stored config bundles that cannot be served", () => {
  let dir: string | undefined;
  let h: Harness | undefined;
  let fake: FakeOpenAI | undefined;
  afterEach(async () => {
    await closeTestResources(h, fake, dir);
    h = undefined;
    fake = undefined;
    dir = undefined;
  });

  async function start(dataDir: string, provider: FakeOpenAI): Promise<Harness> {
    return startHarness({
      runtimeId: "rt-bundles",
      store: createFileStore({ dataDir: join(dataDir, "data") }),
      executionBackend: createOpenAIBackend({ apiKey: RUNTIME_KEY, baseURL: provider.baseURL }),
      secrets: new Map([["TEAM_KEY", TEAM_KEY_VALUE]]),
    });
  }

  async function restart(dataDir: string, provider: FakeOpenAI): Promise<Harness> {
    await h?.close();
    await h?.runtime.close();
    h = await start(dataDir, provider);
    return h;
  }

  /** Runs one input to its end and returns the provider request it made. */
  async function runOnce(clients: Clients, worker: WorkerRef | undefined, provider: FakeOpenAI, text: string) {
    const before = provider.requests.length;
    provider.enqueue(reply({ text: "ok" }));
    const sent = await clients.interaction.sendInput({ worker, input: { text } });
    expect((await waitForRun(clients.interaction, worker, sent.run?.runId ?? "")).status).toBe(RunStatus.COMPLETED);
    expect(provider.requests.length).toBe(before + 1);
    const request = provider.requests[before];
    if (!request) throw new Error("no provider request");
    return request;
  }

  const damages: Array<[string, (file: string) => Promise<void>]> = [
    [
      "its file's last byte flipped",
      async (file) => {
        const bytes = await readFile(file);
        bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 0xff;
        await writeFile(file, bytes);
      },
    ],
    [
      "its content edited under the same digest",
      async (file) => {
        const decoded = decodeSnapshot(await readFile(file));
        if ("problem" in decoded) throw new Error(decoded.problem);
        const stored = fromBinary(ConfigBundleSchema, decoded.body);
        const profile = stored.profiles[0];
        if (profile) profile.model = "edited-model";
        await writeFile(file, encodeSnapshot(toBinary(ConfigBundleSchema, stored)));
      },
    ],
  ];

  it.each(damages)(
    "a worker whose stored bundle is damaged (%s) is refused input, reads as not connected, and runs its profile again once the bundle is pushed again",
    async (_name, damage) => {
      dir = await mkdtemp(join(tmpdir(), "bundle-restore-"));
      fake = await startFakeOpenAI();
      h = await start(dir, fake);
      const bundle = teamBundle();
      const first = h.connect("grpc");
      await first.management.putConfigBundle({ bundle });
      const created = await first.catalog.createWorker({ runtimeId: h.runtime.runtimeId, profile: bundleRef(bundle) });
      const worker = created.worker?.ref;
      const before = await runOnce(first, worker, fake, "hello");
      expect(before.headers.authorization).toBe(`Bearer ${TEAM_KEY_VALUE}`);
      expect(before.body.model).toBe("team-model");
      expect(before.body.messages[0]?.content).toBe("TEAM PROMPT");

      await h.close();
      await h.runtime.close();
      await damage(join(dir, "data", "bundles", "team.bundle"));
      const clients = (await restart(dir, fake)).connect("grpc");
      const { management, catalog, interaction, observation } = clients;

      // Not run on a stand-in profile: refused, typed, saying what to do.
      const requests = fake.requests.length;
      const refused = await expectUnavailable(() => interaction.sendInput({ worker, input: { text: "again" } }));
      expect(refused.message).toContain("damaged");
      expect(refused.message).toContain(bundle.digest);
      expect(refused.metadata).toMatchObject({ bundle_id: "team", digest: bundle.digest, cause: "damaged" });
      expect(fake.requests.length).toBe(requests);

      // Reads as a worker that cannot run.
      const shown = (await catalog.getWorker({ worker })).worker;
      expect(shown?.status).toBe(WorkerStatus.IDLE);
      expect(shown?.connectivity?.state).toBe(ConnectivityState.NOT_CONNECTED);
      expect(shown?.connectivity?.reason).toContain('config bundle "team"');
      const listed = (await catalog.listWorkers({ runtimeId: h.runtime.runtimeId })).workers;
      expect(listed.map((w) => w.connectivity?.state)).toEqual([ConnectivityState.NOT_CONNECTED]);

      // The diagnostic names the bundle and how many workers wait on it.
      const { diagnostics } = await management.listDiagnostics({});
      const damaged = diagnostics.filter((d) => d.code === "store.bundle_damaged");
      expect(damaged).toHaveLength(1);
      expect(damaged[0]?.message).toContain("config bundle team");
      expect(damaged[0]?.message).toContain("1 worker");

      // The id is not free: another digest under it is still refused.
      const other = bundleOf({ bundleId: "team", profiles: [{ name: "coder", model: "other-model" }] });
      await expectReason(() => management.putConfigBundle({ bundle: other }), Code.AlreadyExists, ErrorReason.BUNDLE_CONFLICT);
      // Asked for, it is named as SendInput names it: not a bundle that was never pushed.
      const asked = await expectUnavailable(() => management.getConfigBundle({ bundleId: "team" }));
      expect(asked.message).toContain("damaged");
      expect(asked.metadata).toMatchObject({ bundle_id: "team", digest: bundle.digest, cause: "damaged" });

      // Pushing the same bundle again heals it, without a restart; watchers see it too.
      expect((await management.putConfigBundle({ bundle })).bundle?.digest).toBe(bundle.digest);
      expect((await catalog.getWorker({ worker })).worker?.connectivity?.state).toBe(ConnectivityState.CONNECTED);
      const watch = observation.watchWorker({ worker });
      for await (const message of watch) {
        expect(message.snapshot?.worker?.connectivity?.state).toBe(ConnectivityState.CONNECTED);
        break;
      }
      const after = await runOnce(clients, worker, fake, "healed");
      expect(after.headers.authorization).toBe(`Bearer ${TEAM_KEY_VALUE}`);
      expect(after.body.model).toBe("team-model");
      expect(after.body.messages[0]?.content).toBe("TEAM PROMPT");
    },
    60_000,
  );

  it("starts with a diagnostic when an entry of bundles/ cannot be read (a directory, a dangling link), serving the others", async () => {
    dir = await mkdtemp(join(tmpdir(), "bundle-restore-"));
    fake = await startFakeOpenAI();
    h = await start(dir, fake);
    await h.connect("grpc").management.putConfigBundle({ bundle: teamBundle() });
    await h.close();
    await h.runtime.close();
    const bundles = join(dir, "data", "bundles");
    await mkdir(join(bundles, "a-dir.bundle"));
    await symlink(join(dir, "nowhere"), join(bundles, "dangling.bundle"));
    const { management } = (await restart(dir, fake)).connect("grpc");
    expect((await management.getConfigBundle({ bundleId: "team" })).bundle?.digest).toBe(teamBundle().digest);
    const { diagnostics } = await management.listDiagnostics({});
    const damaged = diagnostics.filter((d) => d.code === "store.bundle_damaged").map((d) => d.message);
    expect(damaged).toHaveLength(2);
    expect(damaged.find((m) => m.includes("a-dir"))).toContain("bundles/a-dir.bundle cannot be read (it is not a regular file)");
    expect(damaged.find((m) => m.includes("dangling"))).toContain("ENOENT");
    for (const message of damaged) expect(message).not.toContain(dir);
    // No digest is known for an unreadable file: none is claimed, and the way out is the same.
    const asked = await expectUnavailable(() => management.getConfigBundle({ bundleId: "a-dir" }));
    expect(asked.metadata).toEqual({ bundle_id: "a-dir", digest: "", cause: "damaged" });
    expect(asked.message).toContain("push the same bundle");
    expect(asked.message).not.toContain(dir);
  }, 30_000);

  it("does not serve a stored bundle that breaks a rule added since it was stored; its workers cannot run", async () => {
    dir = await mkdtemp(join(tmpdir(), "bundle-restore-"));
    fake = await startFakeOpenAI();
    // As an older version left it: a bundle with max_turns over today's bound, and a worker on it.
    const old = bundleOf({
      bundleId: "old",
      profiles: [{ name: "coder", model: "team-model", maxTurns: 5000, secretNames: ["TEAM_KEY"], providerApiKeySecret: "TEAM_KEY" }],
    });
    const store = createFileStore({ dataDir: join(dir, "data") });
    await store.open({ runtimeId: "rt-bundles", generateRuntimeId: () => "rt-bundles" });
    await store.putConfigBundle(old);
    const worker = { runtimeId: "rt-bundles", workerId: "w-old" };
    await store.putWorker({
      worker: create(WorkerSchema, { ref: worker, status: WorkerStatus.IDLE, profile: bundleRef(old) }),
      createRequestId: "",
      createFingerprint: "",
    });
    await store.close();

    h = await start(dir, fake);
    const { management, catalog, interaction } = h.connect("grpc");
    const asked = await expectUnavailable(() => management.getConfigBundle({ bundleId: "old" }));
    expect(asked.message).toContain("max_turns");
    expect(asked.metadata).toMatchObject({ bundle_id: "old", digest: old.digest, cause: "invalid" });
    const { diagnostics } = await management.listDiagnostics({});
    const invalid = diagnostics.filter((d) => d.code === "store.bundle_invalid");
    expect(invalid).toHaveLength(1);
    expect(invalid[0]?.message).toContain("config bundle old");
    expect(invalid[0]?.message).toContain("bundle.profiles[0].max_turns");
    expect(invalid[0]?.message).toContain("1 worker");

    const refused = await expectUnavailable(() => interaction.sendInput({ worker, input: { text: "hi" } }));
    expect(refused.message).toContain("max_turns");
    expect(refused.metadata).toMatchObject({ bundle_id: "old", digest: old.digest, cause: "invalid" });
    expect(fake.requests).toHaveLength(0);
    expect((await catalog.getWorker({ worker })).worker?.connectivity?.state).toBe(ConnectivityState.NOT_CONNECTED);
    await expectReason(
      () => catalog.createWorker({ runtimeId: "rt-bundles", profile: bundleRef(old) }),
      Code.FailedPrecondition,
      ErrorReason.BUNDLE_UNAVAILABLE,
    );
    // The same bundle is refused by today's rules; another digest under its id is a conflict.
    await expectReason(() => management.putConfigBundle({ bundle: old }), Code.InvalidArgument, ErrorReason.INVALID_ARGUMENT);
    const fixed = bundleOf({ bundleId: "old", profiles: [{ name: "coder", maxTurns: 5 }] });
    await expectReason(() => management.putConfigBundle({ bundle: fixed }), Code.AlreadyExists, ErrorReason.BUNDLE_CONFLICT);
  }, 30_000);
});

describe("an embedded runtime's putConfigBundle", () => {
  const cases: Array<[string, Parameters<typeof create<typeof ConfigBundleSchema>>[1], string]> = [
    ["a profile's system prompt", { profiles: [{ name: "p", systemPrompt: "a\ud800b" }] }, "bundle.profiles[0].system_prompt"],
    [
      "a workspace root",
      { profiles: [{ name: "p" }], policies: { allowedWorkspaceRoots: ["\ud800"] } },
      "bundle.policies.allowed_workspace_roots[0]",
    ],
  ];

  it.each(cases)(
    "refuses a lone surrogate in %s as INVALID_ARGUMENT naming the field, before anything is stored",
    async (_name, init, field) => {
      const dir = await mkdtemp(join(tmpdir(), "bundle-surrogate-"));
      const runtime = await createRuntime({ store: createFileStore({ dataDir: dir }) });
      try {
        const bundle = create(ConfigBundleSchema, { bundleId: "s", ...init });
        try {
          bundle.digest = bundleDigest(bundle);
        } catch {
          bundle.digest = `sha256:${"0".repeat(64)}`;
        }
        const error = await runtime.putConfigBundle({ bundle }).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(error).toBeInstanceOf(RuntimeError);
        expect(error).toMatchObject({ code: Code.InvalidArgument, reason: ErrorReason.INVALID_ARGUMENT });
        expect((error as Error).message).toContain(field);
        expect((await runtime.listConfigBundles({})).bundles).toEqual([]);
        expect(await readdir(join(dir, "bundles")).catch(() => [])).toEqual([]);
      } finally {
        await runtime.close();
        await rm(dir, { recursive: true, force: true });
      }
    },
  );
});

/** Expects FAILED_PRECONDITION + BUNDLE_UNAVAILABLE and returns its message and metadata. */
async function expectUnavailable(call: () => Promise<unknown>): Promise<{ message: string; metadata: Record<string, string> }> {
  const { error, detail } = await expectError(call);
  expect([error.code, detail?.reason]).toEqual([Code.FailedPrecondition, ErrorReason.BUNDLE_UNAVAILABLE]);
  return { message: error.rawMessage, metadata: detail?.metadata ?? {} };
}

async function waitForRun(interaction: Clients["interaction"], worker: WorkerRef | undefined, runId: string): Promise<Run> {
  for (;;) {
    const run = (await interaction.getRun({ worker, runId })).run ?? create(RunSchema);
    if (run.status === RunStatus.COMPLETED || run.status === RunStatus.FAILED || run.status === RunStatus.CANCELLED) return run;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
