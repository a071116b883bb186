import { create } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { mkdir, mkdtemp, readFile, realpath, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { ConfigBundleSchema, type ConfigBundle } from "../../gen/worker_runtime/v1/profile_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { AllocationMode } from "../../gen/worker_runtime/v1/runtime_pb.js";
import type { Worker } from "../../gen/worker_runtime/v1/worker_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { CreateWorkerRequestSchema } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { createOpenAIBackend } from "../../src/engine/index.js";
import { bubblewrapWorks, hideHostPaths } from "../../src/engine/tools/shell-sandbox.js";
import { bundleDigest } from "../../src/runtime/bundle-digest.js";
import { createFileStore } from "../../src/store/fs/index.js";
import { expectError, expectReason } from "../support/errors.js";
import { startFakeOpenAI, type FakeOpenAI } from "../support/fake-openai.js";
import { eventually, PROTOCOLS, startHarness, type Clients, type Harness, type Protocol } from "../support/harness.js";
import { reply, type ScriptedToolCall } from "../support/openai-chunks.js";

/** The sandbox test below needs bubblewrap, as test/bundles/shell-sandbox.test.ts does (.ci/run installs it). */
if (!bubblewrapWorks()) throw new Error("the mount tests need bubblewrap: apt-get install bubblewrap");

const call = (id: string, name: string, args: object): ScriptedToolCall => ({ id, name, arguments: JSON.stringify(args) });

type CreateInit = Omit<MessageInitShape<typeof CreateWorkerRequestSchema>, "runtimeId" | "$typeName">;

/** The description of each tool offered in the provider's first request, by name. */
function toolDescriptions(fake: FakeOpenAI): Record<string, string> {
  return Object.fromEntries((fake.requests[0]?.body.tools ?? []).map((t) => [t.function.name, t.function.description ?? ""]));
}

/** A real runtime (file store) with the OpenAI backend on the fake provider and two roots: "work" and "data". */
interface MountServer {
  harness: Harness;
  clients: Clients;
  fake: FakeOpenAI;
  /** Host directories of the roots. */
  work: string;
  data: string;
  createWorker(init: CreateInit): Promise<Worker>;
  /** Runs one turn of tool calls, then a text answer; returns each call's result text. */
  runTools(worker: Worker, calls: ScriptedToolCall[]): Promise<{ outputs: string[]; errors: boolean[] }>;
  /** Closes the server and its runtime (the store stays on disk). */
  stop(): Promise<void>;
}

let base: string | undefined;
const servers: MountServer[] = [];

afterEach(async () => {
  for (const server of servers.splice(0)) await server.stop().catch(() => undefined);
  if (base) await rm(base, { recursive: true, force: true });
  base = undefined;
});

async function newBase(): Promise<string> {
  base = await realpath(await mkdtemp(join(tmpdir(), "mounts-")));
  await mkdir(join(base, "work"));
  await mkdir(join(base, "data"));
  return base;
}

async function serve(protocol: Protocol, dir: string, options: { hiddenPaths?: string[] } = {}): Promise<MountServer> {
  const fake = await startFakeOpenAI();
  const work = join(dir, "work");
  const data = join(dir, "data");
  const harness = await startHarness({
    runtimeId: "rt-mounts",
    store: createFileStore({ dataDir: join(dir, "state") }),
    executionBackend: createOpenAIBackend({
      apiKey: "sk-mounts",
      baseURL: fake.baseURL,
      shellSandbox: "bubblewrap",
      ...(options.hiddenPaths ? { hiddenPaths: options.hiddenPaths } : {}),
    }),
    workspaceRoots: { work, data },
  });
  const clients = harness.connect(protocol);
  const server: MountServer = {
    harness,
    clients,
    fake,
    work,
    data,
    async createWorker(init) {
      const { worker } = await clients.catalog.createWorker({ runtimeId: "rt-mounts", ...init });
      if (!worker) throw new Error("no worker");
      return worker;
    },
    async runTools(worker, calls) {
      fake.enqueue(reply({ toolCalls: calls }), reply({ text: "done" }));
      const { run } = await clients.interaction.sendInput({ worker: worker.ref, input: { text: "go" } });
      await eventually(async () => {
        const status = (await clients.interaction.getRun({ worker: worker.ref, runId: run?.runId ?? "" })).run?.status;
        return status === RunStatus.COMPLETED || status === RunStatus.FAILED;
      });
      const finished = (await clients.interaction.getRun({ worker: worker.ref, runId: run?.runId ?? "" })).run;
      expect(finished?.error?.message ?? "").toBe("");
      const { entries } = await clients.observation.readTranscript({ worker: worker.ref });
      const results = entries.flatMap((entry) => (entry.content.case === "toolResult" ? [entry.content.value] : [])).slice(-calls.length);
      return { outputs: results.map((r) => r.output), errors: results.map((r) => r.isError) };
    },
    async stop() {
      await harness.close();
      await harness.runtime.close();
      await fake.close();
    },
  };
  servers.push(server);
  return server;
}

/** A worker with fs.* on work:proj and the given mounts. */
const withMounts = (mounts: CreateInit["mounts"], capabilities = ["fs.read", "fs.write"]): CreateInit => ({
  capabilities,
  workspace: { root: "work", path: "proj" },
  mounts,
});

describe.each(PROTOCOLS)("worker mounts (%s)", (protocol) => {
  it("reads, lists and searches a file through a mount, and echoes the mounts on the worker", async () => {
    const s = await serve(protocol, await newBase());
    await mkdir(join(s.data, "shared", "sub"), { recursive: true });
    await writeFile(join(s.data, "shared", "sub", "notes.txt"), "the mounted needle\n");
    const worker = await s.createWorker(withMounts([{ root: "data", path: "shared", name: "shared" }]));
    expect(worker.mounts.map((m) => ({ root: m.root, path: m.path, name: m.name, writable: m.writable }))).toEqual([
      { root: "data", path: "shared", name: "shared", writable: false },
    ]);
    const { outputs, errors } = await s.runTools(worker, [
      call("r", "read_file", { path: "/mounts/shared/sub/notes.txt" }),
      call("l", "list_files", { path: "/mounts/shared", recursive: true }),
      call("s", "search_files", { query: "needle", path: "/mounts/shared" }),
      call("w", "list_files", {}),
    ]);
    expect(errors).toEqual([false, false, false, false]);
    expect(outputs[0]).toBe("the mounted needle\n");
    expect(outputs[1]).toBe("/mounts/shared/sub/\n/mounts/shared/sub/notes.txt");
    expect(outputs[2]).toBe("/mounts/shared/sub/notes.txt:1: the mounted needle");
    // Relative paths stay the workspace's.
    expect(outputs[3]).toBe("(empty directory)");
    // The model is told about the mount in the tools' descriptions.
    expect(toolDescriptions(s.fake).read_file).toContain("/mounts/shared (read-only)");
  });

  it("refuses writes into a read-only mount and allows them into a writable one", async () => {
    const s = await serve(protocol, await newBase());
    await mkdir(join(s.data, "in"), { recursive: true });
    await writeFile(join(s.data, "in", "a.txt"), "keep me");
    const worker = await s.createWorker(
      withMounts([
        { root: "data", path: "in", name: "in" },
        { root: "data", path: "out", name: "out", writable: true },
      ]),
    );
    const { outputs, errors } = await s.runTools(worker, [
      call("w1", "write_file", { path: "/mounts/in/b.txt", content: "no" }),
      call("e1", "edit_file", { path: "/mounts/in/a.txt", old_text: "keep", new_text: "lose" }),
      call("w2", "write_file", { path: "/mounts/out/deep/c.txt", content: "yes" }),
      call("w3", "write_file", { path: "/mounts/nope/x.txt", content: "no" }),
    ]);
    expect(errors).toEqual([true, true, false, true]);
    expect(outputs[0]).toContain("read-only mount");
    expect(outputs[1]).toContain("read-only mount");
    expect(outputs[2]).toBe("wrote 3 bytes to /mounts/out/deep/c.txt");
    expect(outputs[3]).toContain("no mount named");
    expect(await readFile(join(s.data, "in", "a.txt"), "utf8")).toBe("keep me");
    await expect(readFile(join(s.data, "in", "b.txt"), "utf8")).rejects.toThrow();
    expect(await readFile(join(s.data, "out", "deep", "c.txt"), "utf8")).toBe("yes");
  });

  it("refuses a symlink in a mount that leads out of it, and a private path inside it", async () => {
    const dir = await newBase();
    await mkdir(join(dir, "data", "m", "private"), { recursive: true });
    await writeFile(join(dir, "data", "m", "private", "key.txt"), "secret");
    await writeFile(join(dir, "outside.txt"), "outside");
    await symlink(join(dir, "outside.txt"), join(dir, "data", "m", "escape.txt"));
    const s = await serve(protocol, dir, { hiddenPaths: [join(dir, "data", "m", "private")] });
    const worker = await s.createWorker(withMounts([{ root: "data", path: "m", name: "m", writable: true }]));
    const { outputs, errors } = await s.runTools(worker, [
      call("r1", "read_file", { path: "/mounts/m/escape.txt" }),
      call("w1", "write_file", { path: "/mounts/m/escape.txt", content: "x" }),
      call("r2", "read_file", { path: "/mounts/m/private/key.txt" }),
      call("r3", "read_file", { path: "/mounts/m/../../outside.txt" }),
      call("l", "list_files", { path: "/mounts/m" }),
    ]);
    expect(errors).toEqual([true, true, true, true, false]);
    expect(outputs[0]).toContain("leads outside");
    expect(outputs[1]).toContain("leads outside");
    expect(outputs[2]).toContain("private");
    expect(outputs[3]).toContain("leads outside");
    expect(outputs[4]).toBe("/mounts/m/escape.txt (symlink)");
    expect(await readFile(join(dir, "outside.txt"), "utf8")).toBe("outside");
  });

  it("refuses every bad mount spec with a typed error naming the field", async () => {
    const s = await serve(protocol, await newBase());
    const ok = { root: "data", path: "d", name: "d" };
    const cases: { init: CreateInit; code: Code; reason: ErrorReason; field: string }[] = [
      {
        init: { capabilities: [], mounts: [ok] },
        code: Code.InvalidArgument,
        reason: ErrorReason.INVALID_ARGUMENT,
        field: "mounts",
      },
      {
        init: withMounts(Array.from({ length: 9 }, (_, i) => ({ root: "data", path: `d${i}`, name: `d${i}` }))),
        code: Code.InvalidArgument,
        reason: ErrorReason.LIMIT_EXCEEDED,
        field: "mounts",
      },
      {
        init: withMounts([{ ...ok, root: "nope" }]),
        code: Code.FailedPrecondition,
        reason: ErrorReason.WORKSPACE_DENIED,
        field: "mounts[0].root",
      },
      {
        init: withMounts([{ ...ok, path: "../up" }]),
        code: Code.InvalidArgument,
        reason: ErrorReason.WORKSPACE_DENIED,
        field: "mounts[0].path",
      },
      {
        init: withMounts([{ ...ok, path: "/abs" }]),
        code: Code.InvalidArgument,
        reason: ErrorReason.WORKSPACE_DENIED,
        field: "mounts[0].path",
      },
      ...["", "Upper", "-lead", "trail.", "sp ace", "a/b", "x".repeat(64)].map((name) => ({
        init: withMounts([{ ...ok, name }]),
        code: Code.InvalidArgument,
        reason: ErrorReason.INVALID_ARGUMENT,
        field: "mounts[0].name",
      })),
      {
        init: withMounts([ok, { ...ok, path: "e" }]),
        code: Code.InvalidArgument,
        reason: ErrorReason.INVALID_ARGUMENT,
        field: "mounts[1].name",
      },
      {
        init: withMounts([{ ...ok, writable: true }], ["fs.read"]),
        code: Code.InvalidArgument,
        reason: ErrorReason.INVALID_ARGUMENT,
        field: "mounts[0].writable",
      },
      ...["proj", "proj/inner", ""].map((path) => ({
        init: withMounts([{ root: "work", path, name: "w" }]),
        code: Code.InvalidArgument,
        reason: ErrorReason.INVALID_ARGUMENT,
        field: "mounts[0].path",
      })),
    ];
    for (const { init, code, reason, field } of cases) {
      const detail = await expectReason(() => s.createWorker(init), code, reason);
      expect({ name: JSON.stringify(init.mounts), field: detail.metadata.field }).toEqual({ name: JSON.stringify(init.mounts), field });
    }
    // A mount beside the workspace in the same root, and a name of 63 characters, are fine.
    const fine = await s.createWorker(withMounts([{ root: "work", path: "proj-2", name: `a${"b".repeat(61)}c` }]));
    expect(fine.mounts).toHaveLength(1);
    // Nothing was created or leased by the refusals.
    const { workers } = await s.clients.catalog.listWorkers({ runtimeId: "rt-mounts" });
    expect(workers).toHaveLength(1);
  });

  it("enforces a config bundle's mount policies", async () => {
    const s = await serve(protocol, await newBase());
    const bundle = (policies: { allowedMountRoots: string[]; allowWritableMounts: boolean }): ConfigBundle => {
      const b = create(ConfigBundleSchema, {
        bundleId: `team-${policies.allowedMountRoots.join("-")}-${policies.allowWritableMounts}`,
        profiles: [{ name: "coder", model: "gpt-test", tools: ["read_file", "write_file"] }],
        policies: { allowedCapabilities: ["fs.read", "fs.write"], allowedWorkspaceRoots: ["work"], ...policies },
      });
      b.digest = bundleDigest(b);
      return b;
    };
    const readOnly = bundle({ allowedMountRoots: ["data"], allowWritableMounts: false });
    const writable = bundle({ allowedMountRoots: ["data"], allowWritableMounts: true });
    for (const b of [readOnly, writable]) await s.clients.management.putConfigBundle({ runtimeId: "rt-mounts", bundle: b });
    let workers = 0;
    const using = (b: ConfigBundle, mounts: CreateInit["mounts"]): CreateInit => ({
      ...withMounts(mounts),
      // Each its own workspace: two write-capable workers may not share one.
      workspace: { root: "work", path: `w${++workers}` },
      profile: { source: { case: "bundle", value: { bundleId: b.bundleId, digest: b.digest, profile: "coder" } } },
    });
    const otherRoot = await expectReason(
      () => s.createWorker(using(readOnly, [{ root: "work", path: "elsewhere", name: "x" }])),
      Code.PermissionDenied,
      ErrorReason.WORKSPACE_DENIED,
    );
    expect(otherRoot.metadata.field).toBe("mounts[0].root");
    const write = await expectReason(
      () => s.createWorker(using(readOnly, [{ root: "data", path: "d", name: "d", writable: true }])),
      Code.PermissionDenied,
      ErrorReason.WORKSPACE_DENIED,
    );
    expect(write.metadata.field).toBe("mounts[0].writable");
    expect((await s.createWorker(using(readOnly, [{ root: "data", path: "d", name: "d" }]))).mounts).toHaveLength(1);
    expect((await s.createWorker(using(writable, [{ root: "data", path: "w", name: "w", writable: true }]))).mounts).toHaveLength(1);
  });

  it("leases mounts: two writable mounts of one path conflict, naming the holder, until the holder stops", async () => {
    const s = await serve(protocol, await newBase());
    const first = await s.createWorker(withMounts([{ root: "data", path: "shared", name: "s", writable: true }]));
    const { error, detail } = await expectError(() =>
      s.createWorker({
        ...withMounts([{ root: "data", path: "shared/inner", name: "s", writable: true }]),
        workspace: { root: "work", path: "other" },
      }),
    );
    expect(error.code).toBe(Code.FailedPrecondition);
    expect(detail?.reason).toBe(ErrorReason.ALLOCATION_CONFLICT);
    expect(detail?.metadata).toEqual({ holder_worker_id: first.ref?.workerId, root: "data", path: "shared", holder_mount_name: "s" });
    expect(error.rawMessage).toContain(`held for writing by worker ${first.ref?.workerId} (its mount "s")`);
    // A writable workspace on a writably mounted path conflicts too; a read-only mount shares.
    await expectReason(
      () => s.createWorker({ capabilities: ["fs.write"], workspace: { root: "data", path: "shared" } }),
      Code.FailedPrecondition,
      ErrorReason.ALLOCATION_CONFLICT,
    );
    const reader = await s.createWorker({
      ...withMounts([{ root: "data", path: "shared", name: "s" }]),
      workspace: { root: "work", path: "r" },
    });
    const { allocations } = await s.clients.management.listAllocations({ runtimeId: "rt-mounts" });
    const held = allocations.map((a) => ({ worker: a.holder?.workerId, root: a.root, path: a.path, mode: a.mode, mount: a.mountName }));
    expect(held).toContainEqual({ worker: first.ref?.workerId, root: "data", path: "shared", mode: AllocationMode.WRITE, mount: "s" });
    expect(held).toContainEqual({ worker: reader.ref?.workerId, root: "data", path: "shared", mode: AllocationMode.READ, mount: "s" });
    // Each worker's workspace lease is told apart from its mounts' by an empty mount name.
    expect(held).toContainEqual({ worker: reader.ref?.workerId, root: "work", path: "r", mode: AllocationMode.WRITE, mount: "" });
    await s.clients.catalog.stopWorker({ worker: first.ref });
    const after = (await s.clients.management.listAllocations({ runtimeId: "rt-mounts" })).allocations;
    expect(after.some((a) => a.holder?.workerId === first.ref?.workerId)).toBe(false);
    await s.createWorker({
      ...withMounts([{ root: "data", path: "shared/inner", name: "s", writable: true }]),
      workspace: { root: "work", path: "other" },
    });
  });

  it("keeps mounts and their leases across a file-store restart", async () => {
    const dir = await newBase();
    const first = await serve(protocol, dir);
    const worker = await first.createWorker(withMounts([{ root: "data", path: "kept", name: "kept", writable: true }]));
    await first.stop();
    servers.splice(servers.indexOf(first), 1);
    const second = await serve(protocol, dir);
    const { worker: after } = await second.clients.catalog.getWorker({ worker: worker.ref });
    expect(after?.mounts.map((m) => [m.root, m.path, m.name, m.writable])).toEqual([["data", "kept", "kept", true]]);
    const { allocations } = await second.clients.management.listAllocations({ runtimeId: "rt-mounts" });
    expect(allocations.map((a) => [a.root, a.path, a.mode])).toContainEqual(["data", "kept", AllocationMode.WRITE]);
    await expectReason(
      () =>
        second.createWorker({
          ...withMounts([{ root: "data", path: "kept", name: "k", writable: true }]),
          workspace: { root: "work", path: "b" },
        }),
      Code.FailedPrecondition,
      ErrorReason.ALLOCATION_CONFLICT,
    );
    // The directory is made when a run first opens it; none ran yet.
    await mkdir(join(dir, "data", "kept"));
    await writeFile(join(dir, "data", "kept", "f.txt"), "after restart");
    const { outputs } = await second.runTools(after as Worker, [call("r", "read_file", { path: "/mounts/kept/f.txt" })]);
    expect(outputs[0]).toBe("after restart");
  });

  it("shows mounts to sandboxed commands at /mounts/<name>, read-only unless writable", async () => {
    const s = await serve(protocol, await newBase());
    await mkdir(join(s.data, "ro"), { recursive: true });
    await writeFile(join(s.data, "ro", "in.txt"), "mounted for commands");
    const worker = await s.createWorker(
      withMounts(
        [
          { root: "data", path: "ro", name: "ro" },
          { root: "data", path: "rw", name: "rw", writable: true },
        ],
        ["shell.exec"],
      ),
    );
    const { outputs } = await s.runTools(worker, [
      call("c1", "run_command", { command: "cat /mounts/ro/in.txt" }),
      call("c2", "run_command", { command: "echo no > /mounts/ro/x.txt" }),
      call("c3", "run_command", { command: "echo yes > /mounts/rw/y.txt && ls /mounts" }),
    ]);
    expect(outputs[0]).toBe("exit code 0\nmounted for commands");
    expect(outputs[1]).toMatch(/^exit code [1-9].*Read-only file system/s);
    expect(outputs[2]).toBe("exit code 0\nro\nrw\n");
    expect(await readFile(join(s.data, "rw", "y.txt"), "utf8")).toBe("yes\n");
    await expect(readFile(join(s.data, "ro", "x.txt"), "utf8")).rejects.toThrow();
    expect(toolDescriptions(s.fake).run_command).toContain("/mounts/rw (writable)");
  });

  it("covers a private path inside a mount from commands, and keeps a read-only mount's pinned parents read-only", async () => {
    const dir = await newBase();
    await mkdir(join(dir, "data", "m", "sub", "private"), { recursive: true });
    await writeFile(join(dir, "data", "m", "sub", "private", "key.txt"), "host-secret-in-a-mount");
    await writeFile(join(dir, "data", "m", "sub", "seen.txt"), "seen");
    const s = await serve(protocol, dir, { hiddenPaths: [join(dir, "data", "m", "sub", "private")] });
    const worker = await s.createWorker(withMounts([{ root: "data", path: "m", name: "m" }], ["shell.exec"]));
    const { outputs } = await s.runTools(worker, [
      call("c1", "run_command", { command: "cat /mounts/m/sub/seen.txt; ls -A /mounts/m/sub/private" }),
      call("c2", "run_command", { command: "touch /mounts/m/sub/new.txt" }),
    ]);
    expect(outputs[0]).toBe("exit code 0\nseen");
    expect(outputs[1]).toMatch(/^exit code [1-9].*Read-only file system/s);
    await expect(readFile(join(dir, "data", "m", "sub", "new.txt"), "utf8")).rejects.toThrow();
  });

  it("tells the model nothing of mounts when the worker has none", async () => {
    const s = await serve(protocol, await newBase());
    const worker = await s.createWorker({ capabilities: ["fs.read"], workspace: { root: "work", path: "plain" } });
    const { outputs, errors } = await s.runTools(worker, [call("r", "read_file", { path: "/mounts/any/x" })]);
    expect(errors).toEqual([true]);
    expect(outputs[0]).toContain("absolute path");
    expect(Object.values(toolDescriptions(s.fake)).some((d) => d.includes("/mounts"))).toBe(false);
  });
});

describe("config bundle mount policies", () => {
  const bundleWith = (policies: MessageInitShape<typeof ConfigBundleSchema>["policies"]): ConfigBundle =>
    create(ConfigBundleSchema, { bundleId: "b", profiles: [{ name: "p", model: "m" }], policies });

  it("are part of the digest, in any order, and leave a bundle without them its old digest", () => {
    const base = { allowedCapabilities: ["fs.read"], allowedWorkspaceRoots: ["work"] };
    // The digest this bundle had before mounts existed (computed with main's code): it must not change.
    const before = "sha256:07b39a6a2ac7edfd6ae015317fc742ecfc0729c3a4a0b405ede1277843f7cb6b";
    expect(bundleDigest(bundleWith(base))).toBe(before);
    expect(bundleDigest(bundleWith({ ...base, allowedMountRoots: [], allowWritableMounts: false }))).toBe(before);
    const a = bundleWith({ ...base, allowedMountRoots: ["data", "work"] });
    const b = bundleWith({ ...base, allowedMountRoots: ["work", "data", "work"] });
    expect(bundleDigest(a)).toBe(bundleDigest(b));
    expect(bundleDigest(a)).not.toBe(bundleDigest(bundleWith(base)));
    expect(bundleDigest(bundleWith({ ...base, allowedMountRoots: ["data", "work"], allowWritableMounts: true }))).not.toBe(bundleDigest(a));
  });

  it("refuses an empty or over-long mount root name in a pushed bundle", async () => {
    const harness = await startHarness({ runtimeId: "rt-bundle-rules" });
    try {
      const clients = harness.connect("grpc");
      for (const root of ["", "r".repeat(65)]) {
        const bundle = bundleWith({ allowedMountRoots: ["ok", root] });
        bundle.digest = bundleDigest(bundle);
        const detail = await expectReason(
          () => clients.management.putConfigBundle({ runtimeId: "rt-bundle-rules", bundle }),
          Code.InvalidArgument,
          ErrorReason.INVALID_ARGUMENT,
        );
        expect(detail.metadata.field).toBe("bundle.policies.allowed_mount_roots[1]");
      }
    } finally {
      await harness.close();
      await harness.runtime.close();
    }
  });
});

describe("bwrap's own errors about a mount", () => {
  it("name the mount as commands see it, not its host path under a private root", () => {
    const mounts = {
      root: [],
      hidden: [],
      insideWorkspace: [],
      workerMounts: [],
      privatePaths: ["/srv/roots/data"],
      mounts: [{ name: "shared", root: "/srv/roots/data/shared", writable: false }],
    };
    const output = "bwrap: Can't find source path /srv/roots/data/shared: No such file or directory";
    expect(hideHostPaths(output, "/srv/roots/main/w1", mounts)).toBe(
      "bwrap: Can't find source path /mounts/shared: No such file or directory",
    );
  });
});
