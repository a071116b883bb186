import { create, toJson } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { mkdir, mkdtemp, rm, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RuntimeHealth } from "../../gen/worker_runtime/v1/backend_pb.js";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { type ConfigBundle, ConfigBundleSchema } from "../../gen/worker_runtime/v1/profile_pb.js";
import { type Run, RunSchema, RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { bundleDigest } from "../../src/runtime/index.js";
import { startCli, type CliProcess } from "../support/cli-process.js";
import { expectReason } from "../support/errors.js";
import { startFakeOpenAI, type FakeOpenAI } from "../support/fake-openai.js";
import { eventually } from "../support/harness.js";
import { reply } from "../support/openai-chunks.js";
import { connectTo, started, startTokenedRuntimes, type ClientSet, type RuntimeProcess } from "./processes.js";
import { bundleOf } from "../support/bundles.js";

/**
 * The Backend's bundle catalog end to end: two `serve` runtimes with file
 * stores behind a `backend` started with --bundles-dir. The bundle exists
 * only in the Backend's directory; creating workers from it through the
 * Backend pushes it to each runtime first, and both the bundle and the
 * workers survive a runtime's SIGKILL and restart.
 */

const TOKENS: Record<string, string> = { "rt-a": "tok-a-bundles-1", "rt-b": "tok-b-bundles-2" };
const BACKEND_TOKEN = "tok-backend-bundles";

let dir: string;
let fake: FakeOpenAI;
const runtimes = new Map<string, RuntimeProcess>();
const direct = new Map<string, ClientSet>();
let client: ClientSet;
let backendProcess: CliProcess;

/** The team bundle as the Backend's directory holds it: no digest, the Backend computes it. */
function teamBundle(): ConfigBundle {
  return create(ConfigBundleSchema, {
    bundleId: "team",
    profiles: [{ name: "helper", model: "gpt-test", systemPrompt: "You help.", maxTurns: 3 }],
  });
}

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "wr-backend-bundles-"));
  fake = await startFakeOpenAI();
  await writeFile(join(dir, "backend.token"), BACKEND_TOKEN);
  const processes = await startTokenedRuntimes(dir, ["rt-a", "rt-b"], TOKENS, fake.baseURL);
  for (const p of processes) {
    runtimes.set(p.runtimeId, p);
    direct.set(p.runtimeId, connectTo(p.address, TOKENS[p.runtimeId]));
  }
  const config = {
    runtimes: processes.map((p) => ({ id: p.runtimeId, url: `http://${p.address}`, tokenFile: `${p.runtimeId}.token` })),
  };
  await writeFile(join(dir, "backend.json"), JSON.stringify(config));
  await mkdir(join(dir, "bundles"));
  await writeFile(join(dir, "bundles", "team.json"), JSON.stringify(toJson(ConfigBundleSchema, teamBundle())));
  backendProcess = startBackend(["--bundles-dir", join(dir, "bundles")]);
  client = connectTo((await backendProcess.listening).h2c, BACKEND_TOKEN);
  await eventually(
    async () => (await client.registry.listRuntimes({})).runtimes.every((r) => r.health === RuntimeHealth.READY),
    20_000,
    "every runtime READY",
  );
}, 60_000);

afterAll(async () => {
  client?.close();
  for (const c of direct.values()) c.close();
  for (const cli of started.splice(0)) cli.kill();
  await fake?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

function startBackend(extra: string[]): CliProcess {
  const cli = startCli([
    "backend",
    "--port",
    "0",
    "--runtime-id",
    "rt-emb",
    "--config",
    join(dir, "backend.json"),
    "--token-file",
    join(dir, "backend.token"),
    ...extra,
  ]);
  started.push(cli);
  return cli;
}

async function waitForRun(c: ClientSet, worker: WorkerRef | undefined, runId: string): Promise<Run> {
  for (;;) {
    const run = (await c.interaction.getRun({ worker, runId })).run ?? create(RunSchema);
    if (run.status === RunStatus.COMPLETED || run.status === RunStatus.FAILED || run.status === RunStatus.CANCELLED) return run;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe("the Backend's config bundles", () => {
  it("pushes a bundle from its directory to each runtime at CreateWorker; bundle and workers survive a restart", async () => {
    const digest = bundleDigest(teamBundle());
    const profile = { source: { case: "bundle" as const, value: { bundleId: "team", digest, profile: "helper" } } };
    // Only the Backend holds it.
    for (const c of direct.values()) {
      await expectReason(() => c.management.getConfigBundle({ bundleId: "team" }), Code.NotFound, ErrorReason.NOT_FOUND);
    }
    const workers = new Map<string, WorkerRef | undefined>();
    for (const runtimeId of ["rt-a", "rt-b"]) {
      const created = await client.catalog.createWorker({ runtimeId, displayName: `team-${runtimeId}`, profile });
      expect(created.worker?.profile?.source.case).toBe("bundle");
      workers.set(runtimeId, created.worker?.ref);
      // The Backend pushed it: the runtime itself now has it.
      const stored = await direct.get(runtimeId)?.management.getConfigBundle({ bundleId: "team" });
      expect(stored?.bundle?.digest).toBe(digest);
      // A second create needs no push and works the same.
      await client.catalog.createWorker({ runtimeId, displayName: `team-${runtimeId}-2`, profile });
    }
    // A selector the Backend does not hold goes through unchanged: the runtime answers.
    const otherDigest = `sha256:${"1".repeat(64)}`;
    await expectReason(
      () =>
        client.catalog.createWorker({
          runtimeId: "rt-a",
          profile: { source: { case: "bundle", value: { bundleId: "team", digest: otherDigest, profile: "helper" } } },
        }),
      Code.FailedPrecondition,
      ErrorReason.BUNDLE_CONFLICT,
    );
    await expectReason(
      () =>
        client.catalog.createWorker({
          runtimeId: "rt-a",
          profile: { source: { case: "bundle", value: { bundleId: "absent", digest, profile: "helper" } } },
        }),
      Code.NotFound,
      ErrorReason.NOT_FOUND,
    );

    // SIGKILL rt-b and start it again on the same port and data dir.
    const rtB = runtimes.get("rt-b");
    if (!rtB) throw new Error("no rt-b");
    await rtB.kill();
    await rtB.restart();
    await eventually(
      async () => (await client.registry.getRegisteredRuntime({ runtimeId: "rt-b" })).runtime?.health === RuntimeHealth.READY,
      20_000,
      "rt-b READY again",
    );
    expect((await direct.get("rt-b")?.management.getConfigBundle({ bundleId: "team" }))?.bundle?.digest).toBe(digest);
    for (const [runtimeId, worker] of workers) {
      const got = await client.catalog.getWorker({ worker });
      expect(got.worker?.profile?.source.case, runtimeId).toBe("bundle");
      fake.enqueue(reply({ text: `hello from ${runtimeId}` }));
      const sent = await client.interaction.sendInput({ worker, input: { text: "hi" } });
      expect((await waitForRun(client, worker, sent.run?.runId ?? "")).status, runtimeId).toBe(RunStatus.COMPLETED);
    }
    // And a new worker from the bundle on the restarted runtime.
    await client.catalog.createWorker({ runtimeId: "rt-b", displayName: "after-restart", profile });

    // rt-a comes back with an empty store: the Backend's "known present" is stale and it pushes again.
    const rtA = runtimes.get("rt-a");
    if (!rtA) throw new Error("no rt-a");
    await rtA.kill();
    await rm(rtA.dataDir, { recursive: true, force: true });
    await rtA.restart();
    await eventually(
      async () => (await client.registry.getRegisteredRuntime({ runtimeId: "rt-a" })).runtime?.health === RuntimeHealth.READY,
      20_000,
      "rt-a READY again",
    );
    const directA = direct.get("rt-a");
    if (!directA) throw new Error("no client for rt-a");
    await expectReason(() => directA.management.getConfigBundle({ bundleId: "team" }), Code.NotFound, ErrorReason.NOT_FOUND);
    await client.catalog.createWorker({ runtimeId: "rt-a", displayName: "after-wipe", profile });
    expect((await direct.get("rt-a")?.management.getConfigBundle({ bundleId: "team" }))?.bundle?.digest).toBe(digest);
  }, 60_000);

  it("pushes a bundle put into the Backend (the embedded runtime, no runtime_id) to the runtime a worker is created on", async () => {
    const bundle = bundleOf({ bundleId: "put-team", profiles: [{ name: "helper", model: "gpt-test" }] });
    expect((await client.management.putConfigBundle({ bundle })).bundle?.digest).toBe(bundle.digest);
    const rtB = direct.get("rt-b");
    if (!rtB) throw new Error("no client for rt-b");
    await expectReason(() => rtB.management.getConfigBundle({ bundleId: "put-team" }), Code.NotFound, ErrorReason.NOT_FOUND);
    const profile = { source: { case: "bundle" as const, value: { bundleId: "put-team", digest: bundle.digest, profile: "helper" } } };
    const created = await client.catalog.createWorker({ runtimeId: "rt-b", profile });
    expect(created.worker?.ref?.runtimeId).toBe("rt-b");
    expect((await rtB.management.getConfigBundle({ bundleId: "put-team" })).bundle?.digest).toBe(bundle.digest);
  }, 30_000);

  it("reads bundles added or edited in its directory while it runs, keeping every version; skips a bad file", async () => {
    const bundles = join(dir, "bundles");
    const version = (systemPrompt: string) =>
      create(ConfigBundleSchema, { bundleId: "late", profiles: [{ name: "helper", systemPrompt }] });
    const select = (bundle: ConfigBundle) => ({
      source: { case: "bundle" as const, value: { bundleId: bundle.bundleId, digest: bundleDigest(bundle), profile: "helper" } },
    });
    // Added after start-up: CreateWorker through the Backend finds it; the caller pushes nothing.
    const v1 = version("first");
    await writeFile(join(bundles, "late.json"), JSON.stringify(toJson(ConfigBundleSchema, v1)));
    await client.catalog.createWorker({ runtimeId: "rt-a", profile: select(v1) });
    // Edited: the new content is a new version, pushed where it is asked for ...
    const v2 = version("second");
    await writeFile(join(bundles, "late.json"), JSON.stringify(toJson(ConfigBundleSchema, v2)));
    await client.catalog.createWorker({ runtimeId: "rt-b", profile: select(v2) });
    expect((await direct.get("rt-b")?.management.getConfigBundle({ bundleId: "late" }))?.bundle?.digest).toBe(bundleDigest(v2));
    // ... and the old one is still held (a runtime that lacks it gets it), though no file has it now.
    await client.catalog.createWorker({ runtimeId: "rt-emb", profile: select(v1) });
    expect((await client.management.getConfigBundle({ bundleId: "late" })).bundle?.digest).toBe(bundleDigest(v1));
    // A bad file found on a re-read is logged and skipped; the Backend keeps serving the good ones.
    await writeFile(join(bundles, "zz-bad.json"), JSON.stringify({ bundleId: "zz-bad", profiles: [{ name: "p" }, { name: "p" }] }));
    const other = create(ConfigBundleSchema, { bundleId: "other", profiles: [{ name: "helper" }] });
    await writeFile(join(bundles, "other.json"), JSON.stringify(toJson(ConfigBundleSchema, other)));
    await client.catalog.createWorker({ runtimeId: "rt-a", profile: select(other) });
    expect(backendProcess.stderr()).toContain("zz-bad.json");
    expect(backendProcess.stderr()).toContain('bundle.profiles[1].name: \\"p\\" appears twice');
    await rm(join(bundles, "zz-bad.json"));

    // SIGHUP re-reads the directory now (and does not stop the Backend).
    const hup = create(ConfigBundleSchema, { bundleId: "hup", profiles: [{ name: "helper" }] });
    await writeFile(join(bundles, "hup.json"), JSON.stringify(toJson(ConfigBundleSchema, hup)));
    const before = backendProcess.stderr().length;
    backendProcess.child.kill("SIGHUP");
    await eventually(
      () =>
        backendProcess
          .stderr()
          .slice(before)
          .split("\n")
          .some((line) => line.includes('"message":"re-read --bundles-dir"') && line.includes('"added":1')),
      20_000,
      "the re-read after SIGHUP",
    );
    expect(backendProcess.child.exitCode).toBeNull();
    await client.catalog.createWorker({ runtimeId: "rt-b", profile: select(hup) });
  }, 60_000);

  it("refuses to start on a bad bundle file, naming the file", async () => {
    const bad = join(dir, "bad-bundles");
    await mkdir(bad);
    const tampered = teamBundle();
    tampered.digest = `sha256:${"2".repeat(64)}`;
    await writeFile(join(bad, "tampered.json"), JSON.stringify(toJson(ConfigBundleSchema, tampered)));
    const cli = startBackend(["--bundles-dir", bad]);
    const exited = await cli.exited;
    expect(exited.code).toBe(2);
    expect(cli.stderr()).toContain("tampered.json");
    expect(cli.stderr()).toContain("does not match");

    const notJson = join(dir, "not-json");
    await mkdir(notJson);
    await writeFile(join(notJson, "broken.json"), "{ nope");
    const other = startBackend(["--bundles-dir", notJson]);
    expect((await other.exited).code).toBe(2);
    expect(other.stderr()).toContain("broken.json");

    // Refused by its size, not read: a sparse file of 3 GiB.
    const huge = join(dir, "huge-bundles");
    await mkdir(huge);
    await writeFile(join(huge, "huge.json"), "");
    await truncate(join(huge, "huge.json"), 3 * 1024 ** 3);
    const large = startBackend(["--bundles-dir", huge]);
    expect((await large.exited).code).toBe(2);
    expect(large.stderr()).toContain(`--bundles-dir file huge.json is ${3 * 1024 ** 3} bytes; at most`);
  }, 60_000);

  it("refuses to start on a bundle file PutConfigBundle would refuse, naming the file and the rule", async () => {
    const refused = join(dir, "refused-bundles");
    await mkdir(refused);
    await writeFile(join(refused, "twice.json"), JSON.stringify({ bundleId: "twice", profiles: [{ name: "p" }, { name: "p" }] }));
    const third = startBackend(["--bundles-dir", refused]);
    expect((await third.exited).code).toBe(2);
    expect(third.stderr()).toContain("twice.json");
    expect(third.stderr()).toContain('bundle.profiles[1].name: "p" appears twice');
  }, 60_000);
});
