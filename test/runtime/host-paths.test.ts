import { Code } from "@connectrpc/connect";
import { mkdir, mkdtemp, realpath, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { BusyPolicy } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { DiagnosticSeverity } from "../../gen/worker_runtime/v1/runtime_pb.js";
import { type HostPathFs, realHostPath } from "../../src/engine/tools/host-path.js";
import { createRuntime, type Runtime, RuntimeError, type RuntimeOptions } from "../../src/runtime/index.js";
import { createFileStore } from "../../src/store/fs/index.js";
import { ScriptedBackend } from "../support/scripted-backend.js";

/**
 * Where a CreateWorker's workspace and mounts are on the host is resolved
 * once per create, off the event loop, within limits.hostPathTimeoutMs. A
 * directory whose file system does not answer (a hung NFS or FUSE mount)
 * is hard to make for real, so these tests give the engine's resolver
 * (realHostPath, the OpenAI backend's hostPath) a file system whose
 * realpath of one directory does not answer until the test lets it; every
 * other path is the real one. The normal and symlink cases run on the real
 * file system in test/e2e/host-leases.test.ts.
 */

const TIMEOUT_MS = 150;

/** The typed error an embedded runtime's call fails with. */
async function refusal(call: () => Promise<unknown>): Promise<RuntimeError> {
  const error = await call().then(
    () => new Error("expected the call to fail, but it succeeded"),
    (error: unknown) => error,
  );
  if (!(error instanceof RuntimeError)) throw error;
  return error;
}

/** Expects a call to fail with `code` and the typed `reason`. */
async function expectReason(call: () => Promise<unknown>, code: Code, reason: ErrorReason): Promise<void> {
  expect(await refusal(call)).toMatchObject({ code, reason });
}

/** The real fs.promises, except that realpath under `hung` waits until released (as a hung mount answers late, if ever). */
class HangingFs implements HostPathFs {
  readonly hung = new Set<string>();
  /** realpath calls made, every path. */
  calls = 0;
  private readonly waiting: (() => void)[] = [];
  private readonly held: Promise<unknown>[] = [];

  realpath(path: string): Promise<string> {
    this.calls++;
    if (![...this.hung].some((dir) => path === dir || path.startsWith(`${dir}/`))) return realpath(path);
    const answer = new Promise<void>((resolve) => this.waiting.push(resolve)).then(() => realpath(path));
    this.held.push(answer.catch(() => undefined));
    return answer;
  }

  /** Lookups held now: each would hold one of libuv's threads on a real hung mount. */
  get hanging(): number {
    return this.waiting.length;
  }

  /** The mount answers again: the lookups waiting on it return (resolved once they have), later ones are not held. */
  async recover(): Promise<void> {
    this.hung.clear();
    for (const resolve of this.waiting.splice(0)) resolve();
    await Promise.all(this.held.splice(0));
    // What waited on them (the runtime's count of unanswered lookups) runs next.
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/**
 * The real fs.promises, except that realpath of one of `slow` waits until
 * `together` such lookups wait at once (then all of them answer), or 300 ms
 * have passed: lookups made one after another each wait the 300 ms alone.
 */
class OverlapFs implements HostPathFs {
  maxWaiting = 0;
  released = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(
    private readonly slow: readonly string[],
    private readonly together: number,
  ) {}

  async realpath(path: string): Promise<string> {
    if (!this.slow.includes(path)) return realpath(path);
    let release = (): void => {};
    const answered = new Promise<void>((resolve) => {
      release = resolve;
    });
    this.waiting.push(release);
    const alone = setTimeout(release, 300);
    this.maxWaiting = Math.max(this.maxWaiting, this.waiting.length);
    if (this.waiting.length >= this.together) for (const waiter of this.waiting.splice(0)) waiter();
    await answered;
    clearTimeout(alone);
    const left = this.waiting.indexOf(release);
    if (left >= 0) this.waiting.splice(left, 1);
    this.released++;
    return realpath(path);
  }
}

/** The scripted backend, locating host directories as the OpenAI backend does, on `fs`. */
class LocatingBackend extends ScriptedBackend {
  /** Directories asked about, in order. */
  readonly located: string[] = [];

  constructor(private readonly fs: HostPathFs) {
    super();
  }

  hostPath(dir: string): Promise<string> {
    this.located.push(dir);
    return realHostPath(dir, this.fs);
  }
}

let dir: string;
let fs: HangingFs;
const runtimes: Runtime[] = [];

beforeEach(async () => {
  dir = await realpath(await mkdtemp(join(tmpdir(), "host-paths-")));
  for (const sub of ["work/a", "work/b", "data/hung", "data/fine"]) await mkdir(join(dir, sub), { recursive: true });
  fs = new HangingFs();
});

afterEach(async () => {
  await fs.recover();
  for (const runtime of runtimes.splice(0)) await runtime.close();
  await rm(dir, { recursive: true, force: true });
});

async function start(options: RuntimeOptions = {}): Promise<Runtime> {
  const runtime = await createRuntime({
    runtimeId: "rt-paths",
    executionBackend: new LocatingBackend(fs),
    workspaceRoots: { work: join(dir, "work"), data: join(dir, "data") },
    limits: { hostPathTimeoutMs: TIMEOUT_MS },
    ...options,
  });
  runtimes.push(runtime);
  return runtime;
}

const writer = { capabilities: ["fs.read", "fs.write"], workspace: { root: "work", path: "a" } };
const hungMount = { root: "data", path: "hung", name: "slow" };

describe("host paths of a CreateWorker", () => {
  it("are resolved once each: the mounts check and the leases share one lookup", async () => {
    const backend = new LocatingBackend(fs);
    const runtime = await start({ executionBackend: backend });
    backend.located.splice(0);
    await runtime.createWorker({
      runtimeId: "rt-paths",
      ...writer,
      mounts: [
        { root: "data", path: "fine", name: "one" },
        { root: "work", path: "b", name: "two", writable: true },
      ],
    });
    // The workspace and two mounts, once each.
    expect(backend.located).toEqual([join(dir, "work", "a"), join(dir, "data", "fine"), join(dir, "work", "b")]);
  });

  it("fail the create UNAVAILABLE HOST_PATH_UNAVAILABLE past the bound, naming the mount and its path as typed, and leave nothing", async () => {
    const runtime = await start();
    fs.hung.add(join(dir, "data", "hung"));
    const abort = new AbortController();
    const watch = runtime.watchRuntime({ runtimeId: "rt-paths" }, { signal: abort.signal });
    await watch.next(); // the snapshot
    const request = { runtimeId: "rt-paths", requestId: "create-1", ...writer, mounts: [hungMount] };
    const error = await refusal(() => runtime.createWorker(request));
    expect(error.code).toBe(Code.Unavailable);
    expect(error.reason).toBe(ErrorReason.HOST_PATH_UNAVAILABLE);
    expect(error.metadata).toEqual({ field: "mounts[0]", root: "data", path: "hung", mount_name: "slow" });
    expect(error.message).toContain(`mount "slow" (data:hung)`);
    expect(error.message).toContain(`${TIMEOUT_MS} ms`);
    expect(error.message).not.toContain(dir);
    // No worker, no lease, no event.
    expect(runtime.listWorkers({ runtimeId: "rt-paths" }).workers).toEqual([]);
    expect(runtime.listAllocations({ runtimeId: "rt-paths" }).allocations).toEqual([]);
    // Once the mount answers, the same request creates the worker, and its lease is held.
    await fs.recover();
    const { worker } = await runtime.createWorker(request);
    const next = await watch.next();
    if (next.done) throw new Error("the runtime watch ended");
    expect(next.value.events.map((event) => event.kind.case)).toEqual(["workerCreated"]);
    expect(runtime.listAllocations({ runtimeId: "rt-paths" }).allocations.map((a) => [a.holder?.workerId, a.root, a.path])).toEqual([
      [worker?.ref?.workerId, "work", "a"],
      [worker?.ref?.workerId, "data", "hung"],
    ]);
    abort.abort();
    await watch.return(undefined);
  });

  it("a workspace that does not answer is named as the workspace", async () => {
    const runtime = await start();
    fs.hung.add(join(dir, "work", "a"));
    const error = await refusal(() => runtime.createWorker({ runtimeId: "rt-paths", ...writer }));
    expect(error.code).toBe(Code.Unavailable);
    expect(error.metadata).toEqual({ field: "workspace", root: "work", path: "a" });
    expect(error.message).toContain("workspace (work:a)");
  });

  it("stop asking a root's file system while a lookup in it is still unanswered, so hung lookups cannot take every fs thread", async () => {
    const runtime = await start();
    fs.hung.add(join(dir, "data", "hung"));
    await expectReason(
      () => runtime.createWorker({ runtimeId: "rt-paths", ...writer, mounts: [hungMount] }),
      Code.Unavailable,
      ErrorReason.HOST_PATH_UNAVAILABLE,
    );
    const asked = fs.calls;
    // Another directory of the same root is refused at once, without a lookup.
    const error = await refusal(() =>
      runtime.createWorker({ runtimeId: "rt-paths", ...writer, mounts: [{ root: "data", path: "fine", name: "fine" }] }),
    );
    expect(error.code).toBe(Code.Unavailable);
    expect(error.message).toContain("still unanswered");
    expect(fs.calls - asked).toBe(1); // the workspace's, in another root
    // Another root is served.
    await runtime.createWorker({ runtimeId: "rt-paths", capabilities: ["fs.read"], workspace: { root: "work", path: "b" } });
    // When the lookup returns, the root is asked again.
    await fs.recover();
    await runtime.createWorker({ runtimeId: "rt-paths", ...writer, mounts: [{ root: "data", path: "fine", name: "fine" }] });
  });

  it("concurrent creates into a root that does not answer hold one lookup of it, not one each, while a healthy root serves", async () => {
    const runtime = await start();
    fs.hung.add(join(dir, "data"));
    const reader = { runtimeId: "rt-paths", capabilities: ["fs.read"] };
    const creates = ["hung", "fine", "hung", "fine"].map((path) =>
      refusal(() => runtime.createWorker({ ...reader, workspace: { root: "data", path } })),
    );
    // Every create into the root has begun (each is past its synchronous checks): one lookup of it is held, not four.
    await new Promise((resolve) => setImmediate(resolve));
    expect(fs.hanging).toBe(1);
    // Another root is served meanwhile.
    const { worker } = await runtime.createWorker({ ...reader, workspace: { root: "work", path: "b" } });
    expect(worker?.workspace?.root).toBe("work");
    for (const error of await Promise.all(creates)) {
      expect(error).toMatchObject({ code: Code.Unavailable, reason: ErrorReason.HOST_PATH_UNAVAILABLE, metadata: { root: "data" } });
    }
    expect(fs.hanging).toBe(1);
    await fs.recover();
    await runtime.createWorker({ ...reader, workspace: { root: "data", path: "fine" } });
  });

  it("a create whose directories are being located as the runtime closes is refused as draining, and leaves nothing", async () => {
    const runtime = await start();
    runtimes.splice(0);
    fs.hung.add(join(dir, "work", "a"));
    const created = refusal(() => runtime.createWorker({ runtimeId: "rt-paths", ...writer }));
    const closed = runtime.close();
    await fs.recover();
    await closed;
    expect(await created).toMatchObject({ code: Code.Unavailable, reason: ErrorReason.RUNTIME_DRAINING });
    expect(runtime.listAllocations({ runtimeId: "rt-paths" }).allocations).toEqual([]);
  });

  it("stop asking any root's file system while two lookups are unanswered", async () => {
    await mkdir(join(dir, "more"));
    const runtime = await start({ workspaceRoots: { work: join(dir, "work"), data: join(dir, "data"), more: join(dir, "more") } });
    fs.hung.add(join(dir, "work", "a"));
    fs.hung.add(join(dir, "data", "hung"));
    await expectReason(
      () => runtime.createWorker({ runtimeId: "rt-paths", ...writer }),
      Code.Unavailable,
      ErrorReason.HOST_PATH_UNAVAILABLE,
    );
    const reader = { runtimeId: "rt-paths", capabilities: ["fs.read"] };
    await expectReason(
      () => runtime.createWorker({ ...reader, workspace: { root: "data", path: "hung" } }),
      Code.Unavailable,
      ErrorReason.HOST_PATH_UNAVAILABLE,
    );
    const asked = fs.calls;
    const error = await refusal(() => runtime.createWorker({ ...reader, workspace: { root: "more", path: "" } }));
    expect(error).toMatchObject({ code: Code.Unavailable, reason: ErrorReason.HOST_PATH_UNAVAILABLE });
    expect(error.message).toContain("still unanswered");
    expect(fs.calls).toBe(asked);
    await fs.recover();
    await runtime.createWorker({ ...reader, workspace: { root: "more", path: "" } });
  });
});

describe("host paths at start-up", () => {
  it("a root that does not answer in time refuses the runtime, naming the root", async () => {
    fs.hung.add(join(dir, "data"));
    await expect(start()).rejects.toThrow(
      `workspace root "data" (${join(dir, "data")}) could not be located on the host within ${TIMEOUT_MS} ms`,
    );
  });

  it("a restored worker whose directories do not answer is restored without its lease, its runs refused until they answer", async () => {
    const store = () => createFileStore({ dataDir: join(dir, "state") });
    const first = await start({ store: store() });
    const { worker } = await first.createWorker({ runtimeId: "rt-paths", ...writer, mounts: [hungMount] });
    const { worker: other } = await first.createWorker({
      runtimeId: "rt-paths",
      capabilities: ["fs.read", "fs.write"],
      workspace: { root: "work", path: "b" },
    });
    await first.close();
    runtimes.splice(0);
    fs.hung.add(join(dir, "data", "hung"));
    const second = await start({ store: store() });
    // The other worker is restored with its lease; this one holds none.
    expect(second.listAllocations({ runtimeId: "rt-paths" }).allocations.map((a) => a.holder?.workerId)).toEqual([other?.ref?.workerId]);
    const diagnostic = second.listDiagnostics({}).diagnostics.find((d) => d.code === "allocation.host_path_unavailable");
    expect(diagnostic?.worker?.workerId).toBe(worker?.ref?.workerId);
    expect(diagnostic?.message).toContain(`mount "slow" (data:hung)`);
    const error = await refusal(() => second.sendInput({ worker: worker?.ref, input: { text: "go" } }));
    expect(error.code).toBe(Code.FailedPrecondition);
    expect(error.reason).toBe(ErrorReason.HOST_PATH_UNAVAILABLE);
    expect(error.metadata).toMatchObject({ field: "mounts[0]", root: "data", path: "hung", mount_name: "slow" });
    expect(error.message).toContain("stop it");
    // The other worker runs.
    await second.sendInput({ worker: other?.ref, input: { text: "go" } });
    // Once the mount answers, its next run locates its directories again (once for two runs asked together), takes its leases and runs.
    await fs.recover();
    const asked = fs.calls;
    const [run, queued] = await Promise.all([
      second.sendInput({ worker: worker?.ref, input: { text: "go" }, busyPolicy: BusyPolicy.ENQUEUE }),
      second.sendInput({ worker: worker?.ref, input: { text: "then" }, busyPolicy: BusyPolicy.ENQUEUE }),
    ]);
    expect(run.runId).not.toBe(queued.runId);
    expect(fs.calls - asked).toBe(2); // its workspace and its mount
    // The log says it is over: the warning stays (it happened), an INFO after it says the worker runs again.
    const located = second.listDiagnostics({}).diagnostics.filter((d) => d.worker?.workerId === worker?.ref?.workerId);
    expect(located.map((d) => [d.code, d.severity])).toEqual([
      ["allocation.host_path_located", DiagnosticSeverity.INFO],
      ["allocation.host_path_unavailable", DiagnosticSeverity.WARNING],
    ]);
    expect(located[0]?.message).toBe("its directories answered again: its leases are taken and its runs admitted");
    expect(second.listAllocations({ runtimeId: "rt-paths" }).allocations.map((a) => [a.holder?.workerId, a.root, a.path])).toEqual([
      [other?.ref?.workerId, "work", "b"],
      [worker?.ref?.workerId, "work", "a"],
      [worker?.ref?.workerId, "data", "hung"],
    ]);
  });

  it("a restored worker stopped while its directories do not answer is stopped as any, and takes no lease once they answer", async () => {
    const store = () => createFileStore({ dataDir: join(dir, "state") });
    const first = await start({ store: store() });
    const { worker } = await first.createWorker({ runtimeId: "rt-paths", ...writer, mounts: [hungMount] });
    await first.close();
    runtimes.splice(0);
    fs.hung.add(join(dir, "data", "hung"));
    const second = await start({ store: store() });
    await second.stopWorker({ worker: worker?.ref });
    await fs.recover();
    await expectReason(
      () => second.sendInput({ worker: worker?.ref, input: { text: "go" } }),
      Code.FailedPrecondition,
      ErrorReason.WORKER_STOPPED,
    );
    expect(second.listAllocations({ runtimeId: "rt-paths" }).allocations).toEqual([]);
  });

  it("two roots that do not answer at restore cost nothing to a worker in a third, healthy root", async () => {
    await mkdir(join(dir, "more", "c"), { recursive: true });
    const roots = { work: join(dir, "work"), data: join(dir, "data"), more: join(dir, "more") };
    const store = () => createFileStore({ dataDir: join(dir, "state") });
    const first = await start({ store: store(), workspaceRoots: roots });
    const reader = { runtimeId: "rt-paths", capabilities: ["fs.read"] };
    // Two in one root first: restore locates two workers at a time.
    const { worker: inData } = await first.createWorker({ ...reader, workspace: { root: "data", path: "hung" } });
    const { worker: inDataToo } = await first.createWorker({ ...reader, workspace: { root: "data", path: "hung" } });
    const { worker: inWork } = await first.createWorker({ ...reader, workspace: { root: "work", path: "a" } });
    const { worker: healthy } = await first.createWorker({ ...reader, workspace: { root: "more", path: "c" } });
    await first.close();
    runtimes.splice(0);
    fs.hung.add(join(dir, "work", "a"));
    fs.hung.add(join(dir, "data", "hung"));
    const second = await start({ store: store(), workspaceRoots: roots });
    // The healthy root's worker holds its lease and runs; the other two are told why they cannot.
    expect(second.listAllocations({ runtimeId: "rt-paths" }).allocations.map((a) => a.holder?.workerId)).toEqual([healthy?.ref?.workerId]);
    const unlocated = second.listDiagnostics({}).diagnostics.filter((d) => d.code === "allocation.host_path_unavailable");
    expect(unlocated.map((d) => d.worker?.workerId).sort()).toEqual(
      [inWork?.ref?.workerId, inData?.ref?.workerId, inDataToo?.ref?.workerId].sort(),
    );
    // One lookup held per hung root (one fs thread each), not one per worker in it: restore asks a root one lookup at a time.
    expect(fs.hanging).toBe(2);
    await second.sendInput({ worker: healthy?.ref, input: { text: "go" } });
    // A new worker in the healthy root is not refused for the hung lookups restore left behind.
    await second.createWorker({ ...reader, workspace: { root: "more", path: "" } });
    await expectReason(
      () => second.sendInput({ worker: inWork?.ref, input: { text: "go" } }),
      Code.FailedPrecondition,
      ErrorReason.HOST_PATH_UNAVAILABLE,
    );
    // Once the hung roots answer, their workers run too.
    await fs.recover();
    await second.sendInput({ worker: inWork?.ref, input: { text: "go" } });
    await second.sendInput({ worker: inData?.ref, input: { text: "go" } });
    await second.sendInput({ worker: inDataToo?.ref, input: { text: "go" } });
  });

  it("locates restored workers' directories in different roots a few at a time, not one after another, with the same leases", async () => {
    // Alternating roots: restore asks each root one lookup at a time, so only lookups in different roots overlap.
    const roots = ["work", "data", "work", "data"];
    const dirs = roots.map((root, i) => join(dir, root, `d${i}`));
    for (const d of dirs) await mkdir(d);
    const store = () => createFileStore({ dataDir: join(dir, "state") });
    const slowLimits = { limits: { hostPathTimeoutMs: 30_000 } };
    const first = await start({ store: store(), ...slowLimits });
    const created: string[] = [];
    for (const [i, root] of roots.entries()) {
      const { worker } = await first.createWorker({
        runtimeId: "rt-paths",
        capabilities: ["fs.read"],
        workspace: { root, path: `d${i}` },
      });
      created.push(worker?.ref?.workerId ?? "");
    }
    await first.close();
    runtimes.splice(0);
    const gate = new OverlapFs(dirs, 2);
    const second = await start({ store: store(), executionBackend: new LocatingBackend(gate), ...slowLimits });
    // Two lookups were waiting at once (each waits until another joins it, or 300 ms), never more.
    expect(gate.maxWaiting).toBe(2);
    expect(gate.released).toBe(4);
    expect(second.listAllocations({ runtimeId: "rt-paths" }).allocations.map((a) => [a.holder?.workerId, a.path])).toEqual(
      created.map((id, i) => [id, `d${i}`]),
    );
    expect(second.listDiagnostics({}).diagnostics.filter((d) => d.code.startsWith("allocation."))).toEqual([]);
  });
});
