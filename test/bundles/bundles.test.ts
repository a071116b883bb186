import { create, fromBinary, toBinary, toJsonString } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile, chmod } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { type ConfigBundle, ConfigBundleSchema } from "../../gen/worker_runtime/v1/profile_pb.js";
import { type Run, RunSchema, RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { TranscriptEntrySchema } from "../../gen/worker_runtime/v1/transcript_pb.js";
import { loadHostSecrets } from "../../src/cli/host-secrets-config.js";
import { createOpenAIBackend } from "../../src/engine/index.js";
import { bubblewrapWorks } from "../../src/engine/tools/shell-sandbox.js";
import { bundleDigest } from "../../src/runtime/bundle-digest.js";
import type { Logger } from "../../src/runtime/index.js";
import { createFileStore } from "../../src/store/fs/index.js";
import { decodeSnapshot, encodeSnapshot } from "../../src/store/fs/snapshot-file.js";
import { expectError, expectReason } from "../support/errors.js";
import { startFakeOpenAI, type FakeOpenAI } from "../support/fake-openai.js";
import { reply } from "../support/openai-chunks.js";
import { type Clients, type Harness, startHarness } from "../support/harness.js";
import { writeUnstartablePrograms } from "../support/unstartable-programs.js";
import { bundleOf } from "../support/bundles.js";
import { closeTestResources } from "../support/test-resources.js";

const SECRET_VALUE = "team-key-5f3a9c1e-never-shown";

const teamBundle = (): ConfigBundle =>
  bundleOf({
    bundleId: "team",
    profiles: [
      {
        name: "coder",
        model: "gpt-test",
        systemPrompt: "You code.",
        tools: ["run_command", "read_file"],
        maxTurns: 5,
        secretNames: ["TEAM_KEY"],
        providerApiKeySecret: "TEAM_KEY",
      },
      { name: "needs-missing", model: "gpt-test", secretNames: ["MISSING_SECRET"] },
    ],
    policies: { allowedCapabilities: ["fs.read", "shell.exec"], allowedWorkspaceRoots: ["main"], shell: { allowedPrograms: ["echo"] } },
  });

describe("config bundle digest", () => {
  it("is the same for the same content built in another order, and changes with the content", () => {
    const a = teamBundle();
    const b = create(ConfigBundleSchema, {
      bundleId: "team",
      profiles: [...a.profiles]
        .reverse()
        .map((p) => ({ ...p, tools: [...p.tools].reverse(), secretNames: [...p.secretNames, ...p.secretNames] })),
      policies: {
        allowedCapabilities: ["shell.exec", "fs.read"],
        allowedWorkspaceRoots: ["main", "main"],
        shell: { allowedPrograms: ["echo"] },
      },
    });
    b.digest = "";
    expect(bundleDigest(b)).toBe(a.digest);
    expect(a.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    const changed = create(ConfigBundleSchema, {
      bundleId: a.bundleId,
      profiles: a.profiles,
      policies: {
        allowedCapabilities: ["fs.read", "shell.exec"],
        allowedWorkspaceRoots: ["main"],
        shell: { allowedPrograms: ["echo", "rm"] },
      },
    });
    expect(bundleDigest(changed)).not.toBe(a.digest);
  });
});

describe("host secrets file", () => {
  it("refuses a group- or world-readable file and reads an owner-only one", async () => {
    const dir = await mkdtemp(join(tmpdir(), "secrets-"));
    const file = join(dir, "secrets.json");
    await writeFile(file, JSON.stringify({ TEAM_KEY: SECRET_VALUE }));
    await chmod(file, 0o644);
    expect(() => loadHostSecrets(file, {})).toThrow(/chmod 600/);
    try {
      loadHostSecrets(file, {});
    } catch (error) {
      expect(String(error)).not.toContain(SECRET_VALUE);
    }
    await chmod(file, 0o600);
    expect(loadHostSecrets(file, { WORKER_RUNTIME_SECRET_OTHER: "x" })).toEqual(
      new Map([
        ["OTHER", "x"],
        ["TEAM_KEY", SECRET_VALUE],
      ]),
    );
    await rm(dir, { recursive: true });
  });

  it.each([
    [{ "bad-name": SECRET_VALUE }, /--secrets-file: "bad-name" is not a secret name a bundle can use/],
    [{ "9LIVES": SECRET_VALUE }, /--secrets-file: "9LIVES" is not a secret name a bundle can use/],
    [{ TEAM_KEY: "" }, /--secrets-file: the value of "TEAM_KEY" is empty/],
  ])("refuses the entry %j, naming it and never its value", async (entries, message) => {
    const dir = await mkdtemp(join(tmpdir(), "secrets-"));
    const file = join(dir, "secrets.json");
    await writeFile(file, JSON.stringify({ GOOD: SECRET_VALUE, ...entries }), { mode: 0o600 });
    expect(() => loadHostSecrets(file, {})).toThrow(message);
    try {
      loadHostSecrets(file, {});
    } catch (error) {
      expect(String(error)).not.toContain(SECRET_VALUE);
    }
    await rm(dir, { recursive: true });
  });
});

describe("config bundles on a real server", () => {
  let dir: string | undefined;
  let h: Harness | undefined;
  let fake: FakeOpenAI | undefined;
  afterEach(async () => {
    await closeTestResources(h, fake, dir);
    h = undefined;
    fake = undefined;
    dir = undefined;
  });

  /** Every log line the runtimes of a test wrote, as JSON. */
  const logLines: string[] = [];
  const line = (level: string) => (message: string, fields?: Record<string, unknown>) => {
    logLines.push(JSON.stringify({ level, message, ...fields }));
  };
  const logger: Logger = { info: line("info"), warn: line("warn"), error: line("error") };

  async function start(dataDir: string, provider: FakeOpenAI): Promise<Harness> {
    return startHarness({
      logger,
      runtimeId: "rt-bundles",
      store: createFileStore({ dataDir: join(dataDir, "data") }),
      // Sandboxed where bubblewrap works, else unsandboxed: the policy is enforced either way.
      executionBackend: createOpenAIBackend({ apiKey: "runtime-own-key", baseURL: provider.baseURL, allowUnsandboxedShell: true }),
      workspaceRoots: { main: join(dataDir, "ws"), other: join(dataDir, "ws-other") },
      secrets: new Map([["TEAM_KEY", SECRET_VALUE]]),
    });
  }

  it("refuses a profile whose approval_required_tools names a tool it does not list, so no approval is silently skipped", async () => {
    dir = await mkdtemp(join(tmpdir(), "bundles-"));
    fake = await startFakeOpenAI();
    h = await start(dir, fake);
    for (const protocol of ["grpc", "connect"] as const) {
      const { management } = h.connect(protocol);
      // "shell.exec" is the capability, not the tool: commands would run with no one asked.
      const typo = bundleOf({
        bundleId: `typo-${protocol}`,
        profiles: [{ name: "p", tools: ["run_command"], approvalRequiredTools: ["shell.exec"] }],
      });
      const detail = await expectReason(
        () => management.putConfigBundle({ bundle: typo }),
        Code.InvalidArgument,
        ErrorReason.INVALID_ARGUMENT,
      );
      expect(detail.metadata.field).toBe("bundle.profiles[0].approval_required_tools[0]");
      await expectReason(() => management.getConfigBundle({ bundleId: typo.bundleId }), Code.NotFound, ErrorReason.NOT_FOUND);
      const listed = bundleOf({
        bundleId: `listed-${protocol}`,
        profiles: [{ name: "p", tools: ["run_command", "read_file"], approvalRequiredTools: ["run_command"] }],
      });
      expect((await management.putConfigBundle({ bundle: listed })).bundle?.digest).toBe(listed.digest);
    }
  });

  it("refuses a profile whose max_turns would leave its runs unbounded, or whose temperature is not a number a provider takes", async () => {
    dir = await mkdtemp(join(tmpdir(), "bundles-"));
    fake = await startFakeOpenAI();
    h = await start(dir, fake);
    const { management } = h.connect("grpc");
    const refused = [
      [{ name: "p", maxTurns: 4_294_967_295 }, "bundle.profiles[0].max_turns"],
      [{ name: "p", maxTurns: 1001 }, "bundle.profiles[0].max_turns"],
      [{ name: "p", temperature: Number.NaN }, "bundle.profiles[0].temperature"],
      [{ name: "p", temperature: Number.POSITIVE_INFINITY }, "bundle.profiles[0].temperature"],
      [{ name: "p", temperature: -1 }, "bundle.profiles[0].temperature"],
    ] as const;
    for (const [i, [profile, field]] of refused.entries()) {
      const bundle = bundleOf({ bundleId: `numbers-${i}`, profiles: [profile] });
      const detail = await expectReason(() => management.putConfigBundle({ bundle }), Code.InvalidArgument, ErrorReason.INVALID_ARGUMENT);
      expect(detail.metadata.field).toBe(field);
    }
    const fine = bundleOf({ bundleId: "numbers-ok", profiles: [{ name: "p", maxTurns: 1000, temperature: 0.7 }, { name: "q" }] });
    expect((await management.putConfigBundle({ bundle: fine })).bundle?.digest).toBe(fine.digest);
  });

  it("refuses to grant shell.exec under a shell policy allowing a program this host does not have, naming it", async () => {
    dir = await mkdtemp(join(tmpdir(), "bundles-"));
    fake = await startFakeOpenAI();
    h = await start(dir, fake);
    const bundle = bundleOf({
      bundleId: "tools",
      profiles: [{ name: "p", tools: ["run_command", "read_file"] }],
      policies: {
        allowedCapabilities: ["fs.read", "shell.exec"],
        allowedWorkspaceRoots: ["main"],
        shell: { allowedPrograms: ["echo", "no-such-program-t5"] },
      },
    });
    // The bundle itself is fine: it may serve runtimes whose hosts have the program.
    await h.connect("grpc").management.putConfigBundle({ bundle });
    const profile = { source: { case: "bundle" as const, value: { bundleId: "tools", digest: bundle.digest, profile: "p" } } };
    for (const protocol of ["grpc", "connect"] as const) {
      const { catalog } = h.connect(protocol);
      const base = { runtimeId: h.runtime.runtimeId, profile, workspace: { root: "main", path: `w-${protocol}` } };
      const { error, detail } = await expectError(() => catalog.createWorker({ ...base, capabilities: ["fs.read", "shell.exec"] }));
      expect([error.code, detail?.reason, detail?.metadata.program]).toEqual([
        Code.FailedPrecondition,
        ErrorReason.PROGRAM_NOT_FOUND,
        "no-such-program-t5",
      ]);
      expect(error.rawMessage).toContain('"no-such-program-t5"');
      expect(error.rawMessage).not.toContain(dir);
      // A worker that cannot run commands does not need the program.
      expect((await catalog.createWorker({ ...base, capabilities: ["fs.read"] })).worker?.capabilities).toEqual(["fs.read"]);
    }
  });

  it("refuses to grant shell.exec under a policy allowing a program that is there but cannot start, saying why rather than not installed", async () => {
    dir = await mkdtemp(join(tmpdir(), "bundles-"));
    const bin = join(dir, "bin");
    await mkdir(bin);
    const broken = await writeUnstartablePrograms(bin, "-t7");
    const savedPath = process.env.PATH;
    process.env.PATH = `${bin}:${savedPath ?? ""}`;
    try {
      fake = await startFakeOpenAI();
      const harness = await startHarness({
        executionBackend: createOpenAIBackend({ apiKey: "k", baseURL: fake.baseURL, shellSandbox: "none", allowUnsandboxedShell: true }),
        workspaceRoots: { main: join(dir, "ws") },
      });
      h = harness;
      for (const { program, cause, why } of broken) {
        const bundle = bundleOf({
          bundleId: `broken-${cause}`,
          profiles: [{ name: "p", tools: ["run_command"] }],
          policies: { allowedCapabilities: ["shell.exec"], allowedWorkspaceRoots: ["main"], shell: { allowedPrograms: ["echo", program] } },
        });
        await harness.connect("grpc").management.putConfigBundle({ bundle });
        const profile = { source: { case: "bundle" as const, value: { bundleId: bundle.bundleId, digest: bundle.digest, profile: "p" } } };
        for (const protocol of ["grpc", "connect"] as const) {
          const request = {
            runtimeId: harness.runtime.runtimeId,
            profile,
            capabilities: ["shell.exec"],
            workspace: { root: "main", path: "w" },
          };
          const { error, detail } = await expectError(() => harness.connect(protocol).catalog.createWorker(request));
          expect([error.code, detail?.reason, detail?.metadata.program, detail?.metadata.cause]).toEqual([
            Code.FailedPrecondition,
            ErrorReason.PROGRAM_NOT_FOUND,
            program,
            cause,
          ]);
          expect(error.rawMessage).toContain(`"${program}" is installed on this runtime but`);
          expect(error.rawMessage).toContain(why);
          expect(error.rawMessage).not.toContain("does not have");
          expect(error.rawMessage).not.toContain(bin);
        }
      }
    } finally {
      process.env.PATH = savedPath;
    }
  });

  it("does not load a stored bundle whose content no longer matches its digest, and says so", async () => {
    dir = await mkdtemp(join(tmpdir(), "bundles-"));
    fake = await startFakeOpenAI();
    h = await start(dir, fake);
    const bundle = teamBundle();
    await h.connect("grpc").management.putConfigBundle({ bundle });
    await h.close();
    await h.runtime.close();
    // The stored file edited by hand: a wider shell policy under the same digest, with a valid checksum.
    const file = join(dir, "data", "bundles", "team.bundle");
    const stored = fromBinary(ConfigBundleSchema, decodedBody(await readFile(file)));
    const shell = stored.policies?.shell;
    if (!shell) throw new Error("the stored bundle has no shell policy");
    shell.allowedPrograms = ["echo", "sh"];
    await writeFile(file, encodeSnapshot(toBinary(ConfigBundleSchema, stored)));
    h = await start(dir, fake);
    const { management } = h.connect("grpc");
    const unavailable = await expectReason(
      () => management.getConfigBundle({ bundleId: "team" }),
      Code.FailedPrecondition,
      ErrorReason.BUNDLE_UNAVAILABLE,
    );
    expect(unavailable.metadata).toEqual({ bundle_id: "team", digest: bundle.digest, cause: "damaged" });
    const { diagnostics } = await management.listDiagnostics({});
    expect(diagnostics.map((d) => [d.code, d.message])).toContainEqual([
      "store.bundle_damaged",
      "config bundle team is damaged: its content does not match its digest; push it again",
    ]);
    // Pushing the real bundle again restores it.
    expect((await management.putConfigBundle({ bundle })).bundle?.policies?.shell?.allowedPrograms).toEqual(["echo"]);
  });

  it("refuses a bundle id that differs from a held one only in case, so the file store never writes two files one file system may merge", async () => {
    dir = await mkdtemp(join(tmpdir(), "bundles-"));
    fake = await startFakeOpenAI();
    h = await start(dir, fake);
    const { management } = h.connect("grpc");
    const small = (bundleId: string, model = "gpt-test") => bundleOf({ bundleId, profiles: [{ name: "p", model }] });
    await management.putConfigBundle({ bundle: small("Team.A") });
    for (const twin of [small("team.a"), small("TEAM.A", "other"), small("tEaM.a")]) {
      const refused = await expectError(() => management.putConfigBundle({ bundle: twin }));
      expect([refused.error.code, refused.detail?.reason]).toEqual([Code.AlreadyExists, ErrorReason.BUNDLE_CONFLICT]);
      expect(refused.detail?.metadata).toEqual({ bundle_id: twin.bundleId, held_bundle_id: "Team.A", digest: small("Team.A").digest });
      expect(refused.error.rawMessage).toContain(`"${twin.bundleId}" differs only in case from "Team.A"`);
    }
    // The same bundle again is still a no-op, and ids that differ otherwise are free.
    await management.putConfigBundle({ bundle: small("Team.A") });
    await management.putConfigBundle({ bundle: small("team.b") });
    await expectReason(() => management.getConfigBundle({ bundleId: "team.a" }), Code.NotFound, ErrorReason.NOT_FOUND);
    const names = await readdir(join(dir, "data", "bundles"));
    expect(names.sort()).toEqual(["Team.A.bundle", "team.b.bundle"]);
    expect(new Set(names.map((name) => name.toLowerCase())).size).toBe(names.length);

    // A damaged copy's id is held ignoring case too.
    await h.close();
    await h.runtime.close();
    const file = join(dir, "data", "bundles", "team.b.bundle");
    const bytes = await readFile(file);
    bytes[bytes.length - 1] = (bytes[bytes.length - 1] ?? 0) ^ 0xff;
    await writeFile(file, bytes);
    h = await start(dir, fake);
    const again = h.connect("grpc").management;
    await expectReason(() => again.putConfigBundle({ bundle: small("TEAM.B") }), Code.AlreadyExists, ErrorReason.BUNDLE_CONFLICT);
    expect((await readdir(join(dir, "data", "bundles"))).sort()).toEqual(["Team.A.bundle", "team.b.bundle"]);
  });

  it("puts, gets and lists bundles; enforces digest, immutability, secrets and policies; survives a restart", async () => {
    dir = await mkdtemp(join(tmpdir(), "bundles-"));
    fake = await startFakeOpenAI();
    h = await start(dir, fake);
    const seen: string[] = [];
    const record = <T>(value: T): T => {
      seen.push(JSON.stringify(value, (_k, v: unknown) => (typeof v === "bigint" ? String(v) : v)));
      return value;
    };
    for (const protocol of ["grpc", "connect"] as const) {
      const { management } = h.connect(protocol);
      const bundle = teamBundle();
      const put = record(await management.putConfigBundle({ bundle }));
      expect(put.bundle?.digest).toBe(bundle.digest);
      // Idempotent for the same digest.
      expect(record(await management.putConfigBundle({ bundle })).bundle?.digest).toBe(bundle.digest);
      // Tampered: content changed, digest kept.
      const tampered = create(ConfigBundleSchema, {
        bundleId: bundle.bundleId,
        digest: bundle.digest,
        profiles: bundle.profiles,
        policies: { allowedCapabilities: ["fs.write"], allowedWorkspaceRoots: ["main"] },
      });
      seen.push(
        JSON.stringify(
          await expectReason(() => management.putConfigBundle({ bundle: tampered }), Code.InvalidArgument, ErrorReason.BUNDLE_CONFLICT),
        ),
      );
      // Same id, another (valid) digest.
      const other = bundleOf({ ...tampered, digest: "" });
      await expectReason(() => management.putConfigBundle({ bundle: other }), Code.AlreadyExists, ErrorReason.BUNDLE_CONFLICT);
      expect(record(await management.getConfigBundle({ bundleId: "team" })).bundle?.digest).toBe(bundle.digest);
      await expectReason(() => management.getConfigBundle({ bundleId: "nope" }), Code.NotFound, ErrorReason.NOT_FOUND);
    }
    const { management, catalog, interaction, observation } = h.connect("grpc");
    const summary = record(await management.getRuntime({}));
    expect(summary.runtime?.capabilities?.shellSandbox).toBe(bubblewrapWorks() ? "bubblewrap" : "none");
    await management.putConfigBundle({ bundle: bundleOf({ bundleId: "another", profiles: [{ name: "p" }] }) });
    const first = await management.listConfigBundles({ pageSize: 1 });
    const second = await management.listConfigBundles({ pageSize: 1, pageToken: first.nextPageToken });
    expect([...first.bundles, ...second.bundles].map((b) => b.bundleId)).toEqual(["another", "team"]);
    expect(second.nextPageToken).toBe("");

    const digest = teamBundle().digest;
    const ref = (profile: string, d = digest, bundleId = "team") => ({
      source: { case: "bundle" as const, value: { bundleId, digest: d, profile } },
    });
    const base = { runtimeId: h.runtime.runtimeId, workspace: { root: "main", path: "w1" } };
    await expectReason(
      () => catalog.createWorker({ ...base, profile: ref("coder", digest, "missing") }),
      Code.NotFound,
      ErrorReason.NOT_FOUND,
    );
    await expectReason(
      () => catalog.createWorker({ ...base, profile: ref("coder", `sha256:${"0".repeat(64)}`) }),
      Code.FailedPrecondition,
      ErrorReason.BUNDLE_CONFLICT,
    );
    const secretError = await expectReason(
      () => catalog.createWorker({ ...base, profile: ref("needs-missing") }),
      Code.FailedPrecondition,
      ErrorReason.SECRET_NOT_FOUND,
    );
    expect(secretError.metadata.secret).toBe("MISSING_SECRET");
    await expectReason(
      () => catalog.createWorker({ ...base, profile: ref("coder"), capabilities: ["fs.write"] }),
      Code.PermissionDenied,
      ErrorReason.CAPABILITY_DENIED,
    );
    await expectReason(
      () => catalog.createWorker({ ...base, profile: ref("coder"), workspace: { root: "other", path: "w" }, capabilities: ["fs.read"] }),
      Code.PermissionDenied,
      ErrorReason.WORKSPACE_DENIED,
    );
    const created = record(await catalog.createWorker({ ...base, profile: ref("coder"), capabilities: ["shell.exec"] }));
    const worker = created.worker?.ref;
    expect(created.worker?.profile?.source.case).toBe("bundle");

    // The shell policy: a forbidden program and shell syntax are refused, an allowed program runs.
    fake.enqueue(
      reply({
        toolCalls: [
          { id: "c1", name: "run_command", arguments: JSON.stringify({ command: "rm -rf ." }) },
          { id: "c2", name: "run_command", arguments: JSON.stringify({ command: "echo hi; cat /etc/passwd" }) },
          { id: "c3", name: "run_command", arguments: JSON.stringify({ command: "echo 'hello world'" }) },
        ],
      }),
      reply({ text: "done" }),
    );
    const run = record(await interaction.sendInput({ worker, input: { text: "go" } }));
    const ended = await waitForRun(interaction, worker, run.run?.runId ?? "");
    expect(ended.status).toBe(RunStatus.COMPLETED);
    const transcript = record(await observation.readTranscript({ worker, limit: 50 }));
    const results = transcript.entries.flatMap((e) => (e.content.case === "toolResult" ? [e.content.value] : []));
    expect(results.map((r) => r.isError)).toEqual([true, true, false]);
    expect(results[0]?.output).toContain('"rm" is not an allowed program');
    expect(results[1]?.output).toContain("shell syntax");
    expect(results[2]?.output).toContain("hello world");
    for (const entry of transcript.entries) seen.push(toJsonString(TranscriptEntrySchema, entry));
    // The profile's provider key came from the host secret, not the runtime's own key.
    expect(fake.requests[0]?.headers.authorization).toBe(`Bearer ${SECRET_VALUE}`);

    // Restart on the same data dir: the bundle and the worker are still there and usable.
    await h.close();
    await h.runtime.close();
    h = await start(dir, fake);
    const again = h.connect("connect");
    expect(record(await again.management.getConfigBundle({ bundleId: "team" })).bundle?.digest).toBe(digest);
    fake.enqueue(reply({ text: "still here" }));
    const next = await again.interaction.sendInput({ worker, input: { text: "again" } });
    expect((await waitForRun(again.interaction, worker, next.run?.runId ?? "")).status).toBe(RunStatus.COMPLETED);
    record(await again.catalog.listWorkers({ runtimeId: h.runtime.runtimeId }));
    record(await again.management.listDiagnostics({}));
    record(await again.management.getRuntime({}));

    // The secret value never appears in a response, event, transcript, stored file or provider request body.
    for (const text of [...seen, ...logLines]) expect(text).not.toContain(SECRET_VALUE);
    for (const request of fake.requests) expect(JSON.stringify(request.body)).not.toContain(SECRET_VALUE);
    for (const file of await filesUnder(join(dir, "data"))) expect((await readFile(file)).includes(SECRET_VALUE), file).toBe(false);
  }, 60_000);
});

async function waitForRun(interaction: Clients["interaction"], worker: WorkerRef | undefined, runId: string): Promise<Run> {
  for (;;) {
    const run = (await interaction.getRun({ worker, runId })).run ?? create(RunSchema);
    if (run.status === RunStatus.COMPLETED || run.status === RunStatus.FAILED || run.status === RunStatus.CANCELLED) return run;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

async function filesUnder(root: string): Promise<string[]> {
  const entries = await readdir(root, { withFileTypes: true, recursive: true });
  return entries.filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name));
}

/** The body of a stored snapshot frame (it must be intact). */
function decodedBody(bytes: Buffer): Uint8Array {
  const decoded = decodeSnapshot(bytes);
  if ("problem" in decoded) throw new Error(decoded.problem);
  return decoded.body;
}
