import { Code } from "@connectrpc/connect";
import { mkdir, mkdtemp, realpath, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { createOpenAIBackend, HiddenPathError } from "../../src/engine/index.js";
import type { HostFs } from "../../src/engine/tools/host-lookups.js";
import { createRuntime, UnansweredLookups } from "../../src/runtime/index.js";
import { bundleOf } from "../support/bundles.js";
import { reply, type ScriptedToolCall } from "../support/openai-chunks.js";
import { RecordingSink, runRequest } from "../support/recording-sink.js";
import { type Harness as EngineHarness, startHarness as startEngine } from "./harness.js";
import { expectError } from "../support/errors.js";
import { type Harness, startHarness } from "../support/harness.js";
import { hangingFs, slowFs } from "../support/hanging-fs.js";
import { closeTestResources } from "../support/test-resources.js";

/**
 * The engine asks the host's file system (private paths at start-up, the
 * program check of a CreateWorker and of each command) through the
 * runtime's lookups, within the runtime's limits.hostPathTimeoutMs (the
 * operator's --host-path-timeout-ms). A file system that does not answer
 * (a hung network mount) is hard to make for real, so the backend is given
 * one whose calls under one directory never answer; every other path is
 * the real one (as test/runtime/host-paths.test.ts does for the roots).
 */

const TIMEOUT_MS = 300;

let base: string;
let h: Harness | undefined;
let engine: EngineHarness | undefined;

beforeEach(async () => {
  base = await realpath(await mkdtemp(join(tmpdir(), "host-lookups-")));
});

afterEach(async () => {
  await engine?.close();
  engine = undefined;
  await closeTestResources(h, undefined, base);
  h = undefined;
});

/** Runs `body` with a directory first on PATH whose calls through the returned file system never answer. */
async function withHungPathEntry(body: (fs: HostFs & { asked: number }, hung: string) => Promise<void>): Promise<void> {
  const hung = join(base, "hung-bin");
  await mkdir(hung);
  const savedPath = process.env.PATH;
  process.env.PATH = `${hung}:${savedPath ?? ""}`;
  try {
    await body(hangingFs(hung), hung);
  } finally {
    process.env.PATH = savedPath;
  }
}

/**
 * A runtime whose host lookups go through `fs`, bounded by `timeoutMs`,
 * holding a bundle whose profile may run `echo` only, so a CreateWorker with
 * that profile checks the program on the PATH (the harness is kept in `h`).
 */
async function startEchoPolicyRuntime(runtimeId: string, fs: HostFs, timeoutMs: number) {
  const harness = await startHarness({
    runtimeId,
    executionBackend: createOpenAIBackend({
      apiKey: "k",
      baseURL: "http://127.0.0.1:9/v1",
      shellSandbox: "none",
      allowUnsandboxedShell: true,
      hostFs: fs,
    }),
    workspaceRoots: { main: join(base, "ws") },
    limits: { hostPathTimeoutMs: timeoutMs },
  });
  h = harness;
  const bundle = bundleOf({
    bundleId: "tools",
    profiles: [{ name: "p", tools: ["run_command"] }],
    policies: { allowedCapabilities: ["shell.exec"], allowedWorkspaceRoots: ["main"], shell: { allowedPrograms: ["echo"] } },
  });
  const { management, catalog } = harness.connect("grpc");
  await management.putConfigBundle({ bundle });
  const profile = { source: { case: "bundle" as const, value: { bundleId: "tools", digest: bundle.digest, profile: "p" } } };
  return { management, catalog, profile };
}

describe("the engine's host lookups", () => {
  it("refuse a private path that does not answer after the runtime's hostPathTimeoutMs, not the default", async () => {
    await mkdir(join(base, "mount"));
    const backend = createOpenAIBackend({
      apiKey: "k",
      baseURL: "http://127.0.0.1:9/v1",
      shellSandbox: "none",
      allowUnsandboxedShell: true,
      hiddenPaths: [join(base, "mount", "token")],
      hostFs: hangingFs(join(base, "mount")),
    });
    const started = Date.now();
    await expect(createRuntime({ executionBackend: backend, limits: { hostPathTimeoutMs: TIMEOUT_MS } })).rejects.toThrow(
      new HiddenPathError(`cannot keep ${join(base, "mount", "token")} private: its file system did not answer within ${TIMEOUT_MS} ms`),
    );
    // A loose bound: the default (5 s) would be far past it.
    expect(Date.now() - started).toBeLessThan(4_000);
  });

  it("refuse a CreateWorker whose allowed program's PATH entry does not answer, in time, while other calls are answered", async () => {
    await withHungPathEntry(async (fs, hung) => {
      const { management, catalog, profile } = await startEchoPolicyRuntime("rt-lookups", fs, TIMEOUT_MS);
      const request = { runtimeId: "rt-lookups", profile, capabilities: ["shell.exec"], workspace: { root: "main", path: "w" } };
      let settled = false;
      const started = Date.now();
      const refused = expectError(() => catalog.createWorker(request)).finally(() => (settled = true));
      // The check waits off the event loop: the runtime answers meanwhile.
      expect((await management.getRuntime({})).runtime?.runtimeId).toBe("rt-lookups");
      expect(settled).toBe(false);
      const { error, detail } = await refused;
      expect(Date.now() - started).toBeLessThan(4_000);
      expect([error.code, detail?.reason, detail?.metadata.program]).toEqual([Code.Unavailable, ErrorReason.HOST_PATH_UNAVAILABLE, "echo"]);
      expect(error.rawMessage).toContain(`did not answer within the check's ${TIMEOUT_MS} ms`);
      expect(error.rawMessage).not.toContain(hung);
      // Asked again, the entry still unanswered is not asked again: refused at once.
      const asked = fs.asked;
      const again = await expectError(() => catalog.createWorker(request));
      expect(again.detail?.reason).toBe(ErrorReason.HOST_PATH_UNAVAILABLE);
      expect(fs.asked).toBe(asked);
      // A worker that does not run commands is not checked.
      expect((await catalog.createWorker({ ...request, capabilities: [] })).worker?.ref?.workerId).toBeTruthy();
    });
  });

  it("give a CreateWorker's program check one deadline: PATH entries each answering inside the timeout do not add up", async () => {
    const timeoutMs = 600;
    const slow = ["slow-a", "slow-b", "slow-c"].map((name) => join(base, name));
    for (const dir of slow) await mkdir(dir);
    const fs = slowFs(slow, 400);
    const savedPath = process.env.PATH;
    process.env.PATH = `${slow.join(":")}:${savedPath ?? ""}`;
    try {
      const { catalog, profile } = await startEchoPolicyRuntime("rt-slow-path", fs, timeoutMs);
      const started = Date.now();
      const { error, detail } = await expectError(() =>
        catalog.createWorker({ runtimeId: "rt-slow-path", profile, capabilities: ["shell.exec"], workspace: { root: "main", path: "w" } }),
      );
      // Asked one after another, the three entries took 1200 ms; the check stops at its one deadline (a loose bound).
      expect(Date.now() - started).toBeLessThan(1_000);
      expect([error.code, detail?.reason, detail?.metadata.program]).toEqual([Code.Unavailable, ErrorReason.HOST_PATH_UNAVAILABLE, "echo"]);
      expect(error.rawMessage).toContain(`did not answer within the check's ${timeoutMs} ms`);
      // The first entry answered (no echo there), the second was asked with what was left and was late, the third never asked.
      expect(fs.asked).toBe(2);
    } finally {
      process.env.PATH = savedPath;
    }
  });

  it("tell the model a command's program could not be checked when its PATH entry does not answer, and ask that entry once", async () => {
    await withHungPathEntry(async (fs) => {
      engine = await startEngine({ hostFs: fs });
      // As a runtime readies it: its lookups, its timeout.
      await engine.backend.ready?.({ lookups: new UnansweredLookups(), timeoutMs: TIMEOUT_MS });
      const call = (id: string, command: string): ScriptedToolCall => ({ id, name: "run_command", arguments: JSON.stringify({ command }) });
      engine.fake.enqueue(reply({ toolCalls: [call("c1", "echo one"), call("c2", "echo two")] }), reply({ text: "ok" }));
      const sink = new RecordingSink("run-hung-path");
      sink.commitInput("run");
      const request = {
        ...runRequest(sink, {
          input: "run",
          runId: "run-hung-path",
          profile: engine.companion,
          workspaceDir: engine.workspace,
          capabilities: ["shell.exec"],
        }),
        policy: { secrets: new Map<string, string>(), shell: { allowedPrograms: ["echo"] } },
      };
      const started = Date.now();
      expect((await engine.backend.execute(request, sink, new AbortController().signal)).kind).toBe("completed");
      expect(Date.now() - started).toBeLessThan(4_000);
      const unchecked = `"echo" could not be checked on this runtime: a directory on the PATH its commands get did not answer within the check's ${TIMEOUT_MS} ms; try again once it answers`;
      expect(sink.committed("toolResult").map((r) => [r.isError, r.output])).toEqual([
        [true, unchecked],
        [true, unchecked],
      ]);
      // The second command did not ask the entry again while the first lookup is unanswered.
      expect(fs.asked).toBe(1);
    });
  });
});

describe("a tool call into a path whose file system does not answer", () => {
  /** One run in `workspaceDir` whose model makes `call` then ends: its outcome, its tool result, and how long it took. */
  async function runOneCall(harness: EngineHarness, workspaceDir: string, call: ScriptedToolCall, capability: string) {
    harness.fake.enqueue(reply({ toolCalls: [call] }), reply({ text: "done" }));
    const runId = `run-${call.id}`;
    const sink = new RecordingSink(runId);
    sink.commitInput("go");
    const request = runRequest(sink, { input: "go", runId, profile: harness.companion, workspaceDir, capabilities: [capability] });
    const started = Date.now();
    const outcome = await harness.backend.execute(request, sink, new AbortController().signal);
    const [result] = sink.committed("toolResult");
    return { outcome, elapsedMs: Date.now() - started, isError: result?.isError, output: result?.output };
  }

  /** Two workspaces, each with notes.txt: `ws` (its file system answers per `fs`) and `fine`; a backend readied with the runtime's lookups. */
  async function startWith(fs: (ws: string) => HostFs & { asked: number }, sandbox: "none" | "bubblewrap") {
    const ws = join(base, "ws");
    const fine = join(base, "fine");
    for (const dir of [ws, fine]) {
      await mkdir(dir);
      await writeFile(join(dir, "notes.txt"), "hello\n");
    }
    const hostFs = fs(ws);
    engine = await startEngine({ hostFs, shellSandbox: sandbox });
    await engine.backend.ready?.({ lookups: new UnansweredLookups(), timeoutMs: TIMEOUT_MS });
    return { harness: engine, ws, fine, fs: hostFs };
  }

  const readCall = (id: string, path: string): ScriptedToolCall => ({ id, name: "read_file", arguments: JSON.stringify({ path }) });
  const commandCall = (id: string): ScriptedToolCall => ({
    id,
    name: "run_command",
    arguments: JSON.stringify({ command: "cat notes.txt" }),
  });

  it("is a read_file tool error after the runtime's timeout, the run goes on, and another workspace reads fine", async () => {
    // A mount inside the workspace that does not answer.
    const { harness, ws, fine, fs } = await startWith((dir) => hangingFs(join(dir, "mnt")), "none");
    const stuck = await runOneCall(harness, ws, readCall("r1", "mnt/notes.txt"), "fs.read");
    expect(stuck.outcome.kind).toBe("completed");
    expect(stuck.elapsedMs).toBeLessThan(4_000);
    expect([stuck.isError, stuck.output]).toEqual([
      true,
      `timed out on mnt/notes.txt: the workspace's file system did not answer within ${TIMEOUT_MS} ms; try again once it answers`,
    ]);
    // While that lookup is unanswered, the workspace is not asked again (one thread on the hung mount): refused at once.
    const asked = fs.asked;
    const again = await runOneCall(harness, ws, readCall("r2", "notes.txt"), "fs.read");
    expect(again.outcome).toEqual({
      kind: "failed",
      reason: ErrorReason.WORKSPACE_DENIED,
      message: `the worker's workspace cannot be opened: the file system under its root did not answer within ${TIMEOUT_MS} ms; try again once it answers`,
    });
    expect(fs.asked).toBe(asked);
    const other = await runOneCall(harness, fine, readCall("r3", "notes.txt"), "fs.read");
    expect([other.outcome.kind, other.isError, other.output]).toEqual(["completed", false, "hello\n"]);
  });

  it("fails a run WORKSPACE_DENIED after the runtime's timeout when its workspace does not answer as the run opens it", async () => {
    const { harness, ws } = await startWith((dir) => hangingFs(join(dir, "w")), "none");
    harness.fake.enqueue(reply({ text: "never asked" }));
    const sink = new RecordingSink("run-hung-root");
    sink.commitInput("go");
    const request = {
      ...runRequest(sink, { input: "go", runId: "run-hung-root", profile: harness.companion, workspaceDir: join(ws, "w") }),
      workspaceRootDir: ws,
    };
    const started = Date.now();
    expect(await harness.backend.execute(request, sink, new AbortController().signal)).toEqual({
      kind: "failed",
      reason: ErrorReason.WORKSPACE_DENIED,
      message: `the worker's workspace cannot be opened: the file system under its root did not answer within ${TIMEOUT_MS} ms; try again once it answers`,
    });
    expect(Date.now() - started).toBeLessThan(4_000);
  });

  it("is a run_command tool error after the runtime's timeout under the sandbox, and another workspace's command runs", async () => {
    // The run opens its workspace (mkdir, realpath); then its file system stops answering.
    const { harness, ws, fine } = await startWith((dir) => hangingFs(dir, 2), "bubblewrap");
    const stuck = await runOneCall(harness, ws, commandCall("c1"), "shell.exec");
    expect(stuck.outcome.kind).toBe("completed");
    expect(stuck.elapsedMs).toBeLessThan(4_000);
    expect([stuck.isError, stuck.output]).toEqual([
      true,
      `cannot run the command: the workspace's file system did not answer within ${TIMEOUT_MS} ms; try again once it answers`,
    ]);
    const other = await runOneCall(harness, fine, commandCall("c2"), "shell.exec");
    expect([other.outcome.kind, other.isError, other.output]).toEqual(["completed", false, "exit code 0\nhello\n"]);
  });

  it("is a run_command tool error after the runtime's timeout unsandboxed, before spawn changes into the hung workspace", async () => {
    // The run opens its workspace (mkdir, realpath); then its file system stops answering.
    const { harness, ws, fine } = await startWith((dir) => hangingFs(dir, 2), "none");
    const stuck = await runOneCall(harness, ws, commandCall("u1"), "shell.exec");
    expect(stuck.outcome.kind).toBe("completed");
    expect(stuck.elapsedMs).toBeLessThan(4_000);
    expect([stuck.isError, stuck.output]).toEqual([
      true,
      `cannot run the command: the workspace's file system did not answer within ${TIMEOUT_MS} ms; try again once it answers`,
    ]);
    const other = await runOneCall(harness, fine, commandCall("u2"), "shell.exec");
    expect([other.outcome.kind, other.isError, other.output]).toEqual(["completed", false, "exit code 0\nhello\n"]);
  });

  it("leaves out of the sandbox a top-level host directory that does not answer, and asks it once while unanswered", async () => {
    const hungTop = "/srv";
    const { harness, fine, fs } = await startWith(() => hangingFs(hungTop), "bubblewrap");
    const list = (id: string): ScriptedToolCall => ({ id, name: "run_command", arguments: JSON.stringify({ command: "ls /" }) });
    const first = await runOneCall(harness, fine, list("l1"), "shell.exec");
    expect(first.elapsedMs).toBeLessThan(4_000);
    expect([first.outcome.kind, first.isError]).toEqual(["completed", false]);
    const second = await runOneCall(harness, fine, list("l2"), "shell.exec");
    for (const listing of [first.output, second.output]) {
      expect(listing?.split("\n")).toContain("usr");
      expect(listing?.split("\n")).not.toContain("srv");
    }
    expect(fs.asked).toBe(1);
  });

  it("is a run_command tool error after the runtime's timeout under the sandbox when one of the worker's mounts does not answer", async () => {
    const mount = join(base, "mroot", "m");
    await mkdir(mount, { recursive: true });
    // The run opens the mount (mkdir, realpath); then its file system stops answering.
    const { harness, ws } = await startWith(() => hangingFs(mount, 2), "bubblewrap");
    harness.fake.enqueue(reply({ toolCalls: [commandCall("c3")] }), reply({ text: "done" }));
    const sink = new RecordingSink("run-hung-mount");
    sink.commitInput("go");
    const request = {
      ...runRequest(sink, {
        input: "go",
        runId: "run-hung-mount",
        profile: harness.companion,
        workspaceDir: ws,
        capabilities: ["shell.exec"],
      }),
      mounts: [{ name: "m", writable: false, dir: mount, rootDir: join(base, "mroot") }],
    };
    const started = Date.now();
    expect((await harness.backend.execute(request, sink, new AbortController().signal)).kind).toBe("completed");
    expect(Date.now() - started).toBeLessThan(4_000);
    expect(sink.committed("toolResult").map((r) => [r.isError, r.output])).toEqual([
      [true, `cannot run the command: the mount /mounts/m's file system did not answer within ${TIMEOUT_MS} ms; try again once it answers`],
    ]);
  });
});
