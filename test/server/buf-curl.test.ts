import { fromBinary } from "@bufbuild/protobuf";
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { ErrorDetailSchema, ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { REPO_ROOT } from "../support/cli-process.js";
import { startHarness, type Harness } from "../support/harness.js";
import { ScriptedBackend } from "../support/scripted-backend.js";

/**
 * grpcurl-style debugging with no proto files at hand: `buf curl` (from
 * node_modules) against a running server, using only server reflection.
 */

const BUF = path.join(REPO_ROOT, "node_modules", ".bin", "buf");
/** Guard against a hung child; the test does not assert on timing. */
const GUARD_MS = 30_000;

let harness: Harness;
let workerId: string;
const children = new Set<ChildProcessWithoutNullStreams>();

beforeAll(async () => {
  harness = await startHarness({ executionBackend: new ScriptedBackend() });
  const clients = harness.connect("grpc");
  const created = await clients.catalog.createWorker({ runtimeId: harness.runtime.runtimeId, displayName: "curl-me" });
  workerId = created.worker?.ref?.workerId ?? "";
  expect(workerId).not.toBe("");
});

afterEach(() => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  children.clear();
});

afterAll(async () => {
  await harness.close();
});

/** Starts `buf curl` with `args`; no schema flags, so it must use reflection. */
function bufCurl(args: readonly string[]): {
  child: ChildProcessWithoutNullStreams;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
} {
  const child = spawn(BUF, ["curl", ...args], { cwd: REPO_ROOT });
  children.add(child);
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  const guard = setTimeout(() => child.kill("SIGKILL"), GUARD_MS);
  const exited = new Promise<number | null>((resolve) =>
    child.once("exit", (code) => {
      clearTimeout(guard);
      resolve(code);
    }),
  );
  return { child, stdout: () => stdout, stderr: () => stderr, exited };
}

/** Runs `buf curl` to completion. */
async function bufCurlOnce(args: readonly string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const run = bufCurl(args);
  const code = await run.exited;
  return { code, stdout: run.stdout(), stderr: run.stderr() };
}

/**
 * The first complete JSON value in `text` (buf curl pretty-prints one value
 * per message), or undefined while it is still incomplete.
 */
function firstJsonObject(text: string): unknown {
  for (let end = text.indexOf("}"); end >= 0; end = text.indexOf("}", end + 1)) {
    try {
      return JSON.parse(text.slice(0, end + 1)) as unknown;
    } catch {
      // not complete yet
    }
  }
  return undefined;
}

/** Reads a streaming `buf curl` until its first message arrives, then kills it. */
async function firstStreamMessage(args: readonly string[]): Promise<unknown> {
  const run = bufCurl(args);
  try {
    return await new Promise<unknown>((resolve, reject) => {
      const check = (): void => {
        const message = firstJsonObject(run.stdout());
        if (message !== undefined) resolve(message);
      };
      run.child.stdout.on("data", check);
      void run.exited.then((code) => reject(new Error(`buf curl exited (${code}) before a message: ${run.stderr()}`)));
    });
  } finally {
    run.child.kill("SIGTERM");
    await run.exited;
  }
}

describe.each(["grpc", "connect"] as const)("buf curl --protocol %s, reflection only", (protocol) => {
  const common = ["--http2-prior-knowledge", "--protocol", protocol];
  const url = (method: string): string => `${harness.baseUrl}/${method}`;

  it("lists the four services, health and both reflection services", async () => {
    const { code, stdout, stderr } = await bufCurlOnce([...common, "--list-services", harness.baseUrl]);
    expect(code, stderr).toBe(0);
    const services = stdout
      .split("\n")
      .map((line) => line.trim())
      .filter(Boolean);
    expect(services).toEqual(
      expect.arrayContaining([
        "worker_runtime.v1.RuntimeManagement",
        "worker_runtime.v1.WorkerCatalog",
        "worker_runtime.v1.WorkerInteraction",
        "worker_runtime.v1.WorkerObservation",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
      ]),
    );
  });

  it("lists the methods of a service", async () => {
    const { code, stdout, stderr } = await bufCurlOnce([...common, "--list-methods", harness.baseUrl]);
    expect(code, stderr).toBe(0);
    expect(stdout).toContain("worker_runtime.v1.WorkerObservation/WatchWorker");
  });

  it("calls GetRuntime and gets JSON holding the runtime id", async () => {
    const { code, stdout, stderr } = await bufCurlOnce([...common, "-d", "{}", url("worker_runtime.v1.RuntimeManagement/GetRuntime")]);
    expect(code, stderr).toBe(0);
    const response = JSON.parse(stdout) as { runtime?: { runtimeId?: string; status?: string } };
    expect(response.runtime?.runtimeId).toBe(harness.runtime.runtimeId);
    expect(response.runtime?.status).toBe("RUNTIME_STATUS_SERVING");
  });

  it("shows the typed ErrorDetail of a failed call", async () => {
    const { code, stderr } = await bufCurlOnce([
      ...common,
      "-d",
      JSON.stringify({ worker: { runtimeId: harness.runtime.runtimeId, workerId: "w-missing" } }),
      url("worker_runtime.v1.WorkerCatalog/GetWorker"),
    ]);
    expect(code).not.toBe(0);
    const error = firstJsonObject(stderr) as { code?: string; details?: { type: string; value: string }[] };
    expect(error.code).toBe("not_found");
    const detail = error.details?.find((d) => d.type === "worker_runtime.v1.ErrorDetail");
    expect(detail, stderr).toBeDefined();
    const decoded = fromBinary(ErrorDetailSchema, new Uint8Array(Buffer.from(detail?.value ?? "", "base64")));
    expect(decoded.reason).toBe(ErrorReason.NOT_FOUND);
    expect(decoded.metadata["worker_id"]).toBe("w-missing");
  });

  it("runs the README's recipe: GetRuntime without a body for the runtime id, then StreamInput to the run's end", async () => {
    const runtime = await bufCurlOnce([...common, url("worker_runtime.v1.RuntimeManagement/GetRuntime")]);
    expect(runtime.code, runtime.stderr).toBe(0);
    const runtimeId = (JSON.parse(runtime.stdout) as { runtime?: { runtimeId?: string } }).runtime?.runtimeId;
    expect(runtimeId).toBe(harness.runtime.runtimeId);
    // The README's request, in the proto field names it writes.
    const body = JSON.stringify({ worker: { runtime_id: runtimeId, worker_id: workerId }, input: { text: "hello" } });
    const { code, stdout, stderr } = await bufCurlOnce([...common, "-d", body, url("worker_runtime.v1.WorkerInteraction/StreamInput")]);
    expect(code, stderr).toBe(0);
    expect(stdout).toContain('"text": "ok"');
    expect(stdout).toContain('"status": "RUN_STATUS_COMPLETED"');
  });

  it("streams WatchWorker and delivers the snapshot first", async () => {
    const message = (await firstStreamMessage([
      ...common,
      "-d",
      JSON.stringify({ worker: { runtimeId: harness.runtime.runtimeId, workerId } }),
      url("worker_runtime.v1.WorkerObservation/WatchWorker"),
    ])) as { snapshot?: { worker?: { ref?: { workerId?: string }; displayName?: string }; cursor?: string } };
    expect(message.snapshot?.worker?.ref?.workerId).toBe(workerId);
    expect(message.snapshot?.worker?.displayName).toBe("curl-me");
    expect(message.snapshot?.cursor).toMatch(/^w/);
  });
});
