import { create } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { mkdir, mkdtemp, readdir, realpath, rm, symlink, unlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { ProfileSchema } from "../../gen/worker_runtime/v1/profile_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { AllocationMode } from "../../gen/worker_runtime/v1/runtime_pb.js";
import { ApprovalDecision } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import type { Worker } from "../../gen/worker_runtime/v1/worker_pb.js";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { CreateWorkerRequestSchema } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { createOpenAIBackend } from "../../src/engine/index.js";
import { createRuntime } from "../../src/runtime/index.js";
import { createFileStore } from "../../src/store/fs/index.js";
import { expectError, expectReason } from "../support/errors.js";
import { startFakeOpenAI, type FakeOpenAI } from "../support/fake-openai.js";
import { reply } from "../support/openai-chunks.js";
import { eventually, PROTOCOLS, startHarness, type Clients, type Harness, type Protocol } from "../support/harness.js";

/**
 * SPEC §6.3: a write lease is exclusive on the host directory, whatever
 * root name or symlink a worker reached it by. Real servers, the OpenAI
 * backend (whose tools follow symlinks inside a root) on the fake provider.
 */

type CreateInit = Omit<MessageInitShape<typeof CreateWorkerRequestSchema>, "runtimeId" | "$typeName">;

interface LeaseServer {
  harness: Harness;
  clients: Clients;
  fake: FakeOpenAI;
  createWorker(init: CreateInit): Promise<Worker>;
  stop(): Promise<void>;
}

let base: string | undefined;
const servers: LeaseServer[] = [];

afterEach(async () => {
  for (const server of servers.splice(0)) await server.stop().catch(() => undefined);
  if (base) await rm(base, { recursive: true, force: true });
  base = undefined;
});

/** A fresh directory with roots "work" and "data", and work/real with work/link → real. */
async function newBase(): Promise<string> {
  base = await realpath(await mkdtemp(join(tmpdir(), "host-leases-")));
  await mkdir(join(base, "work", "real"), { recursive: true });
  await mkdir(join(base, "data"));
  await symlink(join(base, "work", "real"), join(base, "work", "link"));
  return base;
}

/** A profile whose file writes wait for approval, so a run can be parked across a restart. */
const CAREFUL = create(ProfileSchema, { name: "careful", tools: ["write_file"], approvalRequiredTools: ["write_file"], maxTurns: 5 });
const backendOn = (fake: FakeOpenAI) => createOpenAIBackend({ apiKey: "sk-leases", baseURL: fake.baseURL, profiles: [CAREFUL] });

async function serve(
  protocol: Protocol,
  dir: string,
  workspaceRoots: Record<string, string> = { work: join(dir, "work"), data: join(dir, "data") },
): Promise<LeaseServer> {
  const fake = await startFakeOpenAI();
  const harness = await startHarness({
    runtimeId: "rt-leases",
    store: createFileStore({ dataDir: join(dir, "state") }),
    executionBackend: backendOn(fake),
    workspaceRoots,
  });
  const clients = harness.connect(protocol);
  const server: LeaseServer = {
    harness,
    clients,
    fake,
    async createWorker(init) {
      const { worker } = await clients.catalog.createWorker({ runtimeId: "rt-leases", ...init });
      if (!worker) throw new Error("no worker");
      return worker;
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

const writer = (root: string, path: string): CreateInit => ({ capabilities: ["fs.read", "fs.write"], workspace: { root, path } });

describe("workspace roots that overlap on the host", () => {
  it("are refused when the runtime is made: the same directory, one inside another, or one reached through a symlink", async () => {
    const dir = await newBase();
    const fake = await startFakeOpenAI();
    try {
      const cases: Record<string, string>[] = [
        { a: join(dir, "work"), b: join(dir, "work", "real") },
        { a: join(dir, "work", "real"), b: join(dir, "work") },
        { a: join(dir, "work"), b: join(dir, "work") },
        { a: join(dir, "work", "link"), b: join(dir, "work", "real") },
        // A root that does not exist yet still lies inside the one above it.
        { a: join(dir, "data"), b: join(dir, "data", "later", "deeper") },
      ];
      for (const workspaceRoots of cases) {
        const made = createRuntime({ executionBackend: backendOn(fake), workspaceRoots });
        await expect(made).rejects.toThrow(/workspace roots "a" .* and "b" .* overlap/);
      }
      // Apart, side by side, they are fine.
      const runtime = await createRuntime({
        executionBackend: backendOn(fake),
        workspaceRoots: { a: join(dir, "work"), b: join(dir, "data"), c: join(dir, "data-2") },
      });
      await runtime.close();
    } finally {
      await fake.close();
    }
  });
});

describe.each(PROTOCOLS)("leases on the host (%s)", (protocol) => {
  it("refuses a second writer of one directory reached through a symlink, naming the holder and the path as typed", async () => {
    const s = await serve(protocol, await newBase());
    const first = await s.createWorker(writer("work", "link"));
    const { error, detail } = await expectError(() => s.createWorker(writer("work", "real")));
    expect(error.code).toBe(Code.FailedPrecondition);
    expect(detail?.reason).toBe(ErrorReason.ALLOCATION_CONFLICT);
    expect(detail?.metadata).toMatchObject({ holder_worker_id: first.ref?.workerId, root: "work", path: "link" });
    expect(error.rawMessage).toBe(`work:real overlaps work:link, held for writing by worker ${first.ref?.workerId}`);
    // Inside it, and a directory not made yet under the link: the same host directory still.
    await expectReason(() => s.createWorker(writer("work", "real/sub")), Code.FailedPrecondition, ErrorReason.ALLOCATION_CONFLICT);
    await expectReason(() => s.createWorker(writer("work", "link/not/made/yet")), Code.FailedPrecondition, ErrorReason.ALLOCATION_CONFLICT);
    // A writable mount of it conflicts too; a reader shares; the whole root contains it.
    await expectReason(
      () => s.createWorker({ ...writer("data", "w"), mounts: [{ root: "work", path: "real", name: "r", writable: true }] }),
      Code.FailedPrecondition,
      ErrorReason.ALLOCATION_CONFLICT,
    );
    const reader = await s.createWorker({ capabilities: ["fs.read"], workspace: { root: "work", path: "real" } });
    await expectReason(() => s.createWorker(writer("work", "")), Code.FailedPrecondition, ErrorReason.ALLOCATION_CONFLICT);
    // A sibling is another directory.
    const sibling = await s.createWorker(writer("work", "other"));
    const { allocations } = await s.clients.management.listAllocations({ runtimeId: "rt-leases" });
    expect(allocations.map((a) => [a.holder?.workerId, a.root, a.path, a.mode])).toEqual([
      [first.ref?.workerId, "work", "link", AllocationMode.WRITE],
      [reader.ref?.workerId, "work", "real", AllocationMode.READ],
      [sibling.ref?.workerId, "work", "other", AllocationMode.WRITE],
    ]);
    await s.clients.catalog.stopWorker({ worker: first.ref });
    await s.createWorker(writer("work", "real"));
  });

  it("refuses a worker's two mounts of one directory, and a mount of its own workspace through a symlink, naming the field", async () => {
    const s = await serve(protocol, await newBase());
    await mkdir(join(base as string, "data", "shared"), { recursive: true });
    await symlink(join(base as string, "data", "shared"), join(base as string, "data", "alias"));
    const cases: { mounts: CreateInit["mounts"]; field: string }[] = [
      {
        mounts: [
          { root: "data", path: "shared", name: "a" },
          { root: "data", path: "shared", name: "b" },
        ],
        field: "mounts[1].path",
      },
      {
        mounts: [
          { root: "data", path: "shared/in", name: "a" },
          { root: "data", path: "shared", name: "b" },
        ],
        field: "mounts[1].path",
      },
      {
        mounts: [
          { root: "data", path: "x", name: "a" },
          { root: "data", path: "alias/y", name: "b" },
          { root: "data", path: "shared", name: "c" },
        ],
        field: "mounts[2].path",
      },
      { mounts: [{ root: "work", path: "link", name: "a" }], field: "mounts[0].path" },
    ];
    for (const { mounts, field } of cases) {
      const { error, detail } = await expectError(() => s.createWorker({ ...writer("work", "real"), mounts }));
      expect(error.code, field).toBe(Code.InvalidArgument);
      expect(detail?.reason).toBe(ErrorReason.INVALID_ARGUMENT);
      expect(detail?.metadata.field).toBe(field);
    }
    // Nothing was leased by the refused creates.
    expect((await s.clients.management.listAllocations({ runtimeId: "rt-leases" })).allocations).toEqual([]);
    await s.createWorker({
      ...writer("work", "real"),
      mounts: [
        { root: "data", path: "shared", name: "a" },
        { root: "data", path: "x", name: "b" },
      ],
    });
  });

  it("refuses at CreateWorker a workspace or mount that leads out of its root through a symlink, as its runs would, naming the field", async () => {
    const dir = await newBase();
    const outside = join(dir, "outside");
    await mkdir(outside);
    // Planted in each root (by an earlier worker's command, say), pointing out of it.
    await symlink(outside, join(dir, "work", "escape"));
    await symlink(outside, join(dir, "data", "escape"));
    const s = await serve(protocol, dir);
    const cases: { init: CreateInit; field: string; message: string }[] = [
      {
        init: writer("work", "escape"),
        field: "workspace.path",
        message: "the worker's workspace leads outside its root through a symlink",
      },
      {
        init: writer("work", "escape/not/made"),
        field: "workspace.path",
        message: "the worker's workspace leads outside its root through a symlink",
      },
      {
        init: { ...writer("work", "real"), mounts: [{ root: "data", path: "escape", name: "m" }] },
        field: "mounts[0].path",
        message: "the mount /mounts/m leads outside its root through a symlink",
      },
    ];
    for (const { init, field, message } of cases) {
      const { error, detail } = await expectError(() => s.createWorker(init));
      expect([error.code, detail?.reason, detail?.metadata.field], field).toEqual([
        Code.FailedPrecondition,
        ErrorReason.WORKSPACE_DENIED,
        field,
      ]);
      expect(error.rawMessage).toBe(`${field}: ${message}`);
    }
    // Nothing was leased, listed or made by the refused creates; a symlink that stays inside its root is followed.
    expect((await s.clients.management.listAllocations({ runtimeId: "rt-leases" })).allocations).toEqual([]);
    expect((await s.clients.catalog.listWorkers({ runtimeId: "rt-leases" })).workers).toEqual([]);
    expect(await readdir(outside)).toEqual([]);
    await s.createWorker({ ...writer("work", "link/in"), mounts: [{ root: "data", path: "m", name: "m" }] });
  });

  it("takes a root as it is when a worker is created: one whose symlink the operator re-pointed since start-up is followed", async () => {
    const dir = await newBase();
    for (const sub of ["first", "second", "outside"]) await mkdir(join(dir, sub));
    await symlink(join(dir, "first"), join(dir, "current"));
    const s = await serve(protocol, dir, { current: join(dir, "current") });
    await s.createWorker(writer("current", "before"));
    // A deploy re-points the root while the runtime serves.
    await unlink(join(dir, "current"));
    await symlink(join(dir, "second"), join(dir, "current"));
    const after = await s.createWorker(writer("current", "after"));
    expect(after.workspace?.root).toBe("current");
    // Its run's tools reach the same directory.
    s.fake.enqueue(
      reply({ toolCalls: [{ id: "w1", name: "write_file", arguments: JSON.stringify({ path: "a.txt", content: "x" }) }] }),
      reply({ text: "ok" }),
    );
    const { run } = await s.clients.interaction.sendInput({ worker: after.ref, input: { text: "write" } });
    const status = async () => (await s.clients.interaction.getRun({ worker: after.ref, runId: run?.runId ?? "" })).run?.status;
    await eventually(async () => (await status()) === RunStatus.COMPLETED);
    expect(await readdir(join(dir, "second", "after"))).toEqual(["a.txt"]);
    // A symlink out of the root as it is now is still refused.
    await symlink(join(dir, "outside"), join(dir, "second", "escape"));
    const { detail } = await expectError(() => s.createWorker(writer("current", "escape")));
    expect(detail?.reason).toBe(ErrorReason.WORKSPACE_DENIED);
    // Re-pointed again, so is the first place asked for that leads back into where the root led before:
    // inside the root as last located, not as it is now.
    await mkdir(join(dir, "third"));
    await unlink(join(dir, "current"));
    await symlink(join(dir, "third"), join(dir, "current"));
    await symlink(join(dir, "second", "after"), join(dir, "third", "back"));
    const back = await expectError(() => s.createWorker(writer("current", "back")));
    expect(back.detail?.reason).toBe(ErrorReason.WORKSPACE_DENIED);
  });

  it("refuses at admission the runs of a worker restored with a workspace now leading out of its root, until it leads back in", async () => {
    const dir = await newBase();
    await mkdir(join(dir, "outside"));
    const first = await serve(protocol, dir);
    const worker = await first.createWorker(writer("work", "link"));
    await first.stop();
    servers.splice(servers.indexOf(first), 1);
    // While the runtime was down the symlink was pointed out of the root.
    await unlink(join(dir, "work", "link"));
    await symlink(join(dir, "outside"), join(dir, "work", "link"));
    const second = await serve(protocol, dir);
    // It holds no lease on the directory outside, and the log says why its runs are refused.
    expect((await second.clients.management.listAllocations({ runtimeId: "rt-leases" })).allocations).toEqual([]);
    const { diagnostics } = await second.clients.management.listDiagnostics({});
    const outside = diagnostics.find((d) => d.code === "allocation.outside_root");
    expect(outside?.worker?.workerId).toBe(worker.ref?.workerId);
    expect(outside?.message).toContain("workspace.path: the worker's workspace leads outside its root through a symlink");
    const { error, detail } = await expectError(() => second.clients.interaction.sendInput({ worker: worker.ref, input: { text: "go" } }));
    expect([error.code, detail?.reason, detail?.metadata.field]).toEqual([
      Code.FailedPrecondition,
      ErrorReason.WORKSPACE_DENIED,
      "workspace.path",
    ]);
    expect(error.rawMessage).toContain("until its directories lead inside their roots again, or stop it");
    expect(await readdir(join(dir, "outside"))).toEqual([]);
    // Pointed back in, its next run is checked again, takes its lease and runs.
    await unlink(join(dir, "work", "link"));
    await symlink(join(dir, "work", "real"), join(dir, "work", "link"));
    second.fake.enqueue(reply({ text: "back" }));
    await second.clients.interaction.sendInput({ worker: worker.ref, input: { text: "go" } });
    const { allocations } = await second.clients.management.listAllocations({ runtimeId: "rt-leases" });
    expect(allocations.map((a) => a.holder?.workerId)).toEqual([worker.ref?.workerId]);
    const after = (await second.clients.management.listDiagnostics({})).diagnostics.filter(
      (d) => d.worker?.workerId === worker.ref?.workerId,
    );
    expect(after.map((d) => d.code)).toEqual(["allocation.inside_root", "allocation.outside_root"]);
  });

  it("refuses the runs of a worker restored without its lease until it is stopped, and says so in diagnostics", async () => {
    const dir = await newBase();
    await mkdir(join(dir, "work", "other"));
    const first = await serve(protocol, dir);
    const holder = await first.createWorker(writer("work", "other"));
    const moved = await first.createWorker({ ...writer("work", "link"), profile: { source: { case: "builtin", value: "careful" } } });
    // Its run waits for approval of a write, and stays parked across the restart.
    const write = { id: "w1", name: "write_file", arguments: JSON.stringify({ path: "a.txt", content: "x" }) };
    first.fake.enqueue(reply({ toolCalls: [write] }));
    const { run } = await first.clients.interaction.sendInput({ worker: moved.ref, input: { text: "write" } });
    const runId = run?.runId ?? "";
    const status = async (s: LeaseServer) => (await s.clients.interaction.getRun({ worker: moved.ref, runId })).run?.status;
    await eventually(async () => (await status(first)) === RunStatus.AWAITING_APPROVAL);
    await first.stop();
    servers.splice(servers.indexOf(first), 1);
    // While the runtime was down the symlink was pointed at the holder's directory.
    await unlink(join(dir, "work", "link"));
    await symlink(join(dir, "work", "other"), join(dir, "work", "link"));
    const second = await serve(protocol, dir);
    const { allocations } = await second.clients.management.listAllocations({ runtimeId: "rt-leases" });
    expect(allocations.map((a) => a.holder?.workerId)).toEqual([holder.ref?.workerId]);
    const { diagnostics } = await second.clients.management.listDiagnostics({});
    const conflict = diagnostics.find((d) => d.code === "allocation.restore_conflict");
    expect(conflict?.worker?.workerId).toBe(moved.ref?.workerId);
    expect(conflict?.message).toContain(`held for writing by worker ${holder.ref?.workerId}`);
    const { error, detail } = await expectError(() => second.clients.interaction.sendInput({ worker: moved.ref, input: { text: "go" } }));
    expect(error.code).toBe(Code.FailedPrecondition);
    expect(detail?.reason).toBe(ErrorReason.ALLOCATION_CONFLICT);
    expect(detail?.metadata.holder_worker_id).toBe(holder.ref?.workerId);
    expect(error.rawMessage).toContain("stop it");
    expect(await status(second)).toBe(RunStatus.AWAITING_APPROVAL);
    for (const decision of [ApprovalDecision.APPROVE, ApprovalDecision.REJECT]) {
      await expectReason(
        () => second.clients.interaction.resolveApproval({ worker: moved.ref, runId, toolCallId: "w1", decision }),
        Code.FailedPrecondition,
        ErrorReason.ALLOCATION_CONFLICT,
      );
    }
    expect(await status(second)).toBe(RunStatus.AWAITING_APPROVAL);
    await expectReason(
      async () => {
        for await (const _ of second.clients.interaction.streamInput({ worker: moved.ref, input: { text: "go" } })) {
          // refused before the first message
        }
      },
      Code.FailedPrecondition,
      ErrorReason.ALLOCATION_CONFLICT,
    );
    // The holder is unaffected; once the unleased worker is stopped it is stopped, as any.
    await second.clients.catalog.stopWorker({ worker: moved.ref });
    await expectReason(
      () => second.clients.interaction.sendInput({ worker: moved.ref, input: { text: "go" } }),
      Code.FailedPrecondition,
      ErrorReason.WORKER_STOPPED,
    );
  });
});
