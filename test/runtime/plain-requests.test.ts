import { create } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { BusyPolicy } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { ConfigBundleSchema } from "../../gen/worker_runtime/v1/profile_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import {
  GetConfigBundleRequestSchema,
  GetRuntimeRequestSchema,
  ListAllocationsRequestSchema,
  ListConfigBundlesRequestSchema,
  ListDiagnosticsRequestSchema,
  PutConfigBundleRequestSchema,
} from "../../gen/worker_runtime/v1/runtime_management_pb.js";
import { DiagnosticSeverity } from "../../gen/worker_runtime/v1/runtime_pb.js";
import {
  CreateWorkerRequestSchema,
  GetWorkerRequestSchema,
  ListWorkersRequestSchema,
} from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import {
  ApprovalDecision,
  GetRunRequestSchema,
  ListRunsRequestSchema,
  StreamInputRequestSchema,
  SendInputRequestSchema,
} from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import { ReadTranscriptRequestSchema } from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import { WorkerStatus } from "../../gen/worker_runtime/v1/worker_pb.js";
import { bundleDigest, createRuntime, RuntimeError, type Runtime } from "../../src/runtime/index.js";
import { eventually } from "../support/harness.js";
import { awaitApproval, holdOpen, ScriptedBackend } from "../support/scripted-backend.js";

/**
 * The embedded Runtime's methods take a request as connect's generated
 * clients do: the message, or a plain object of its fields (its init shape).
 * Found by a README walk: a plain object used to fail with a TypeError from
 * deep inside (createWorker read `displayName.length` of undefined). Each
 * method is called both ways on one real Runtime (memory store) and must do
 * the same; a plain object with a wrong-typed field, or no object at all, is
 * refused with INVALID_ARGUMENT naming the field.
 */

let backend: ScriptedBackend;
let runtime: Runtime;
let runtimeId: string;

beforeEach(async () => {
  backend = new ScriptedBackend();
  runtime = await createRuntime({ executionBackend: backend, limits: { cancelGraceMs: 2_000 } });
  runtimeId = runtime.runtimeId;
});

afterEach(async () => {
  await runtime.close();
});

/** A worker created from a plain request, as the README shows it. */
async function plainWorker(requestId = ""): Promise<{ runtimeId: string; workerId: string }> {
  const { worker } = await runtime.createWorker({ runtimeId, requestId, profile: { source: { case: "builtin", value: "companion" } } });
  return { runtimeId, workerId: worker?.ref?.workerId ?? "" };
}

/** Runs a call however it fails (a throw, a rejection, a stream's first message) and returns its error. */
async function failureOf(call: () => unknown): Promise<unknown> {
  try {
    const result = call();
    if (result !== null && typeof result === "object" && Symbol.asyncIterator in result) {
      for await (const _ of result as AsyncIterable<unknown>) break;
    } else {
      await result;
    }
  } catch (error) {
    return error;
  }
  throw new Error("expected the call to fail, but it succeeded");
}

/** Expects a RuntimeError INVALID_ARGUMENT naming `field` (never a TypeError from inside). */
async function expectInvalid(call: () => unknown, field: string, reason = ErrorReason.INVALID_ARGUMENT): Promise<RuntimeError> {
  const error = await failureOf(call);
  if (!(error instanceof RuntimeError)) throw new Error(`expected a RuntimeError for ${field}, got ${String(error)}`);
  expect({ code: error.code, reason: error.reason, field: error.metadata.field }, error.message).toEqual({
    code: Code.InvalidArgument,
    reason,
    field,
  });
  return error;
}

describe("WorkerCatalog methods with plain requests", () => {
  it("create, get, list, stop and delete do what they do with created messages", async () => {
    const init = {
      runtimeId,
      profile: { source: { case: "builtin" as const, value: "companion" } },
      displayName: "plain",
      intent: "answers",
      labels: { team: "docs" },
      requestId: "create-1",
    };
    const created = await runtime.createWorker(init);
    expect(created.worker).toMatchObject({ displayName: "plain", intent: "answers", labels: { team: "docs" } });
    expect(created.worker?.profile?.source).toEqual({ case: "builtin", value: "companion" });
    // The same request_id with the created message: the same request, so the same worker (else IDEMPOTENCY_CONFLICT).
    expect(await runtime.createWorker(create(CreateWorkerRequestSchema, init))).toEqual(created);

    const ref = { runtimeId, workerId: created.worker?.ref?.workerId ?? "" };
    expect(runtime.getWorker({ worker: ref })).toEqual(runtime.getWorker(create(GetWorkerRequestSchema, { worker: ref })));
    expect(runtime.getWorker({ worker: ref })).toEqual(created.worker);

    const listInit = { runtimeId, statuses: [WorkerStatus.IDLE], labelSelector: { team: "docs" }, pageSize: 10 };
    const listed = runtime.listWorkers(listInit);
    expect(listed.workers.map((w) => w.ref?.workerId)).toEqual([ref.workerId]);
    expect(listed).toEqual(runtime.listWorkers(create(ListWorkersRequestSchema, listInit)));

    expect((await runtime.stopWorker({ worker: ref })).status).toBe(WorkerStatus.STOPPED);
    await runtime.deleteWorker({ worker: ref, force: false });
    const gone = await failureOf(() => runtime.getWorker({ worker: ref }));
    expect(gone).toMatchObject({ code: Code.NotFound, reason: ErrorReason.NOT_FOUND });
  });
});

describe("WorkerInteraction methods with plain requests", () => {
  it("send, get, list, cancel, approve and stream do what they do with created messages", async () => {
    const worker = await plainWorker();
    const sendInit = { worker, input: { text: "hello" }, requestId: "send-1" };
    const run = await runtime.sendInput(sendInit);
    // The same request_id with the created message returns the same run: both were read as one request.
    expect((await runtime.sendInput(create(SendInputRequestSchema, sendInit))).runId).toBe(run.runId);
    await eventually(async () => (await runtime.getRun({ worker, runId: run.runId })).status === RunStatus.COMPLETED);
    const got = await runtime.getRun({ worker, runId: run.runId });
    expect(got).toEqual(await runtime.getRun(create(GetRunRequestSchema, { worker, runId: run.runId })));

    const listInit = { worker, status: RunStatus.COMPLETED, pageSize: 5 };
    const listed = await runtime.listRuns(listInit);
    expect(listed.runs.map((r) => r.runId)).toEqual([run.runId]);
    expect(listed).toEqual(await runtime.listRuns(create(ListRunsRequestSchema, listInit)));

    const held = holdOpen("partial");
    backend.enqueue(held.script);
    const holding = await runtime.sendInput({ worker, input: { text: "hold" } });
    await held.started;
    expect((await runtime.cancelRun({ worker, runId: holding.runId })).status).toBe(RunStatus.CANCELLED);

    let approved = false;
    backend.enqueue(awaitApproval(() => (approved = true)));
    const asking = await runtime.sendInput({ worker, input: { text: "write" } });
    await eventually(async () => (await runtime.getRun({ worker, runId: asking.runId })).status === RunStatus.AWAITING_APPROVAL);
    await runtime.resolveApproval({ worker, runId: asking.runId, toolCallId: "c1", decision: ApprovalDecision.APPROVE, reason: "ok" });
    await eventually(async () => (await runtime.getRun({ worker, runId: asking.runId })).status === RunStatus.COMPLETED);
    expect(approved).toBe(true);

    const statuses: RunStatus[] = [];
    const signal = AbortSignal.timeout(10_000);
    for await (const message of runtime.streamInput({ worker, input: { text: "stream" } }, { signal })) {
      for (const event of message.events) if (event.kind.case === "runChanged") statuses.push(event.kind.value.status);
    }
    expect(statuses.at(-1)).toBe(RunStatus.COMPLETED);
  });
});

describe("WorkerObservation methods with plain requests", () => {
  it("read the transcript and watch a worker and the runtime as with created messages", async () => {
    const worker = await plainWorker();
    const run = await runtime.sendInput({ worker, input: { text: "hello" } });
    await eventually(async () => (await runtime.getRun({ worker, runId: run.runId })).status === RunStatus.COMPLETED);

    const readInit = { worker, position: { case: "afterSeq" as const, value: 1n }, limit: 10 };
    const read = await runtime.readTranscript(readInit);
    expect(read.entries.map((e) => e.seq)).toEqual([2n]);
    expect(read).toEqual(await runtime.readTranscript(create(ReadTranscriptRequestSchema, readInit)));

    const abort = new AbortController();
    for await (const message of runtime.watchWorker({ worker }, { signal: abort.signal })) {
      expect(message.snapshot?.worker?.ref?.workerId).toBe(worker.workerId);
      break;
    }
    for await (const message of runtime.watchRuntime({ runtimeId }, { signal: abort.signal })) {
      expect(message.snapshot?.runtime?.runtimeId).toBe(runtimeId);
      break;
    }
    abort.abort();
  });
});

describe("RuntimeManagement methods with plain requests", () => {
  it("summary, diagnostics, allocations and config bundles as with created messages", async () => {
    expect(runtime.getRuntime({ runtimeId }).runtimeId).toBe(runtimeId);
    expect(runtime.getRuntime({}).runtimeId).toBe(runtimeId);
    expect(runtime.getRuntime(create(GetRuntimeRequestSchema, { runtimeId })).runtimeId).toBe(runtimeId);

    const diagnosticsInit = { runtimeId, minSeverity: DiagnosticSeverity.WARNING, pageSize: 10 };
    expect(runtime.listDiagnostics(diagnosticsInit)).toEqual(
      runtime.listDiagnostics(create(ListDiagnosticsRequestSchema, diagnosticsInit)),
    );
    const allocationsInit = { runtimeId, pageSize: 10 };
    expect(runtime.listAllocations(allocationsInit)).toEqual(
      runtime.listAllocations(create(ListAllocationsRequestSchema, allocationsInit)),
    );

    const bundleInit = {
      bundleId: "plain",
      profiles: [{ name: "helper", model: "scripted", temperature: 0.5, maxTurns: 3 }],
      policies: { allowedCapabilities: ["fs.read"], shell: { allowedPrograms: [] } },
    };
    const bundle = { ...bundleInit, digest: bundleDigest(create(ConfigBundleSchema, bundleInit)) };
    const put = await runtime.putConfigBundle({ bundle });
    // Put again as a created message: the same id and digest, so the same bundle, not a conflict.
    expect(await runtime.putConfigBundle(create(PutConfigBundleRequestSchema, { bundle }))).toEqual(put);
    const got = runtime.getConfigBundle({ bundleId: "plain" });
    expect(got.bundle?.profiles[0]).toMatchObject({ name: "helper", temperature: 0.5, maxTurns: 3 });
    expect(got).toEqual(runtime.getConfigBundle(create(GetConfigBundleRequestSchema, { bundleId: "plain" })));
    const listInit = { runtimeId, pageSize: 1 };
    expect(runtime.listConfigBundles(listInit)).toEqual(runtime.listConfigBundles(create(ListConfigBundlesRequestSchema, listInit)));
    expect(runtime.listConfigBundles(listInit).bundles.map((b) => b.bundleId)).toEqual(["plain"]);
  });
});

describe("plain requests with wrong-typed fields", () => {
  it("are refused with INVALID_ARGUMENT naming the field, and change nothing", async () => {
    const worker = await plainWorker();
    const before = runtime.listWorkers({ runtimeId });
    // Wrong on purpose: the casts let a JavaScript caller's mistakes through the types.
    const anyRuntime = runtime as unknown as Record<string, (request: unknown, options?: unknown) => unknown>;
    const call = (method: string, request: unknown) => (): unknown => anyRuntime[method]?.(request, { signal: AbortSignal.timeout(5_000) });
    const cases: [string, () => unknown][] = [
      ["runtime_id", call("createWorker", { runtimeId: 42 })],
      ["profile", call("createWorker", { runtimeId, profile: "companion" })],
      ["profile.builtin", call("createWorker", { runtimeId, profile: { source: { case: "builtin", value: 7 } } })],
      ["profile.source", call("createWorker", { runtimeId, profile: { source: { case: "builtn", value: "companion" } } })],
      ["profile.source", call("createWorker", { runtimeId, profile: { source: "companion" } })],
      ["capabilities", call("createWorker", { runtimeId, capabilities: "fs.read" })],
      ["capabilities[1]", call("createWorker", { runtimeId, capabilities: ["fs.read", 3] })],
      ['labels["team"]', call("createWorker", { runtimeId, labels: { team: 1 } })],
      ["labels", call("createWorker", { runtimeId, labels: new Map([["team", "docs"]]) })],
      ["initial_input.text", call("createWorker", { runtimeId, initialInput: { text: ["hi"] } })],
      ["runtime_id", call("createWorker", { runtime_id: runtimeId })],
      ["worker", call("getWorker", { worker: runtime.getWorker({ worker }) })],
      ["worker.worker_id", call("getWorker", { worker: { runtimeId, workerId: 5 } })],
      ["force", call("deleteWorker", { worker, force: "yes" })],
      ["page_size", call("listWorkers", { runtimeId, pageSize: "10" })],
      ["statuses[1]", call("listWorkers", { runtimeId, statuses: [WorkerStatus.IDLE, "IDLE"] })],
      ["busy_policy", call("sendInput", { worker, input: { text: "x" }, busyPolicy: "ENQUEUE" })],
      ["busy_policy", call("sendInput", { worker, input: { text: "x" }, busyPolicy: 1.5 })],
      ["input", call("sendInput", { worker, input: "hello" })],
      ["request", call("sendInput", create(StreamInputRequestSchema, { worker, input: { text: "x" } }))],
      ["input.text", call("streamInput", { worker, input: { text: 5 } })],
      ["run_id", call("cancelRun", { worker, runId: 1 })],
      ["decision", call("resolveApproval", { worker, runId: "r", toolCallId: "c1", decision: "APPROVE" })],
      ["after_seq", call("readTranscript", { worker, position: { case: "afterSeq", value: 3 } })],
      ["before_seq", call("readTranscript", { worker, position: { case: "beforeSeq", value: -1n } })],
      ["limit", call("readTranscript", { worker, limit: -1 })],
      ["worker", call("watchWorker", { worker: [runtimeId, worker.workerId] })],
      ["after_cursor", call("watchRuntime", { runtimeId, afterCursor: 0 })],
      ["min_severity", call("listDiagnostics", { minSeverity: "ERROR" })],
      [
        "bundle.profiles[0].temperature",
        call("putConfigBundle", { bundle: { bundleId: "b", profiles: [{ name: "p", temperature: "hot" }] } }),
      ],
      ["bundle.policies.shell.allowed_programs[0]", call("putConfigBundle", { bundle: { policies: { shell: { allowedPrograms: [1] } } } })],
      ["bundle_id", call("getConfigBundle", { bundleId: null, bundle_id: "b" })],
      ["page_token", call("listConfigBundles", { pageToken: {} })],
      ["page_size", call("listAllocations", { pageSize: 2 ** 31 })],
      ["runtime_id", call("getRuntime", { runtimeId: true })],
    ];
    for (const [field, refused] of cases) await expectInvalid(refused, field);
    expect(runtime.listWorkers({ runtimeId })).toEqual(before);
    expect(runtime.listConfigBundles({}).bundles).toEqual([]);
  });

  it("name a snake_case key's field as it is spelled here", async () => {
    const error = await expectInvalid(() => runtime.createWorker({ runtime_id: runtimeId } as never), "runtime_id");
    expect(error.message).toContain("runtimeId");
  });

  it("take an unknown enum number as protobuf does, leaving it to the field's own rule", async () => {
    const worker = await plainWorker();
    const plain = await expectInvalid(
      () => runtime.sendInput({ worker, input: { text: "x" }, busyPolicy: 99 as BusyPolicy }),
      "busy_policy",
    );
    const message = await expectInvalid(
      () => runtime.sendInput(create(SendInputRequestSchema, { worker, input: { text: "x" }, busyPolicy: 99 as BusyPolicy })),
      "busy_policy",
    );
    expect(plain.message).toBe("busy_policy: unknown value 99");
    expect(plain.message).toBe(message.message);
  });

  it("are bounded: more values than a message of max_message_bytes could hold is LIMIT_EXCEEDED before they are walked", async () => {
    const small = await createRuntime({ limits: { maxMessageBytes: 64 * 1024 } });
    try {
      const statuses = new Array<number>(64 * 1024 + 1).fill(WorkerStatus.IDLE);
      const error = await expectInvalid(
        () => small.listWorkers({ runtimeId: small.runtimeId, statuses }),
        "statuses",
        ErrorReason.LIMIT_EXCEEDED,
      );
      expect(error.metadata.limit).toBe(String(64 * 1024));
    } finally {
      await small.close();
    }
  });
});

describe("requests that are not objects", () => {
  it("are refused by every request-taking method with INVALID_ARGUMENT naming the request", async () => {
    const worker = await plainWorker();
    const anyRuntime = runtime as unknown as Record<string, (request: unknown, options?: unknown) => unknown>;
    const methods = [
      "listDiagnostics",
      "listAllocations",
      "putConfigBundle",
      "getConfigBundle",
      "listConfigBundles",
      "createWorker",
      "getWorker",
      "listWorkers",
      "stopWorker",
      "deleteWorker",
      "sendInput",
      "streamInput",
      "cancelRun",
      "resolveApproval",
      "getRun",
      "listRuns",
      "readTranscript",
      "watchWorker",
      "watchRuntime",
    ];
    for (const method of methods) {
      for (const request of [undefined, null, "request", 42, true, [worker]]) {
        const error = await expectInvalid(() => anyRuntime[method]?.(request, { signal: AbortSignal.timeout(5_000) }), "request");
        expect(error.message, method).toMatch(/^request: must be a worker_runtime\.v1\.\w+Request message or a plain object of its fields/);
      }
    }
    // GetRuntime's request is optional; anything else that is not an object is refused.
    expect(runtime.getRuntime().runtimeId).toBe(runtimeId);
    for (const request of [null, "request", 42, [runtimeId]]) await expectInvalid(() => anyRuntime.getRuntime?.(request), "request");
    expect(runtime.getWorker({ worker }).status).toBe(WorkerStatus.IDLE);
  });
});
