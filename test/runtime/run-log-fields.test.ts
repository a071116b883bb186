import { create } from "@bufbuild/protobuf";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { RunStatus, StopReason } from "../../gen/worker_runtime/v1/run_pb.js";
import { CreateWorkerRequestSchema } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import {
  ApprovalDecision,
  ResolveApprovalRequestSchema,
  SendInputRequestSchema,
} from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import { createRuntime, type Logger, type Runtime, type RuntimeStore } from "../../src/runtime/index.js";
import { createFileStore } from "../../src/store/fs/index.js";
import { eventually } from "../support/harness.js";
import { awaitApproval, type RunScript, ScriptedBackend } from "../support/scripted-backend.js";

/**
 * The log fields a caller hands the Runtime (InputOptions.logFields: the
 * server's request id and method) reach every line of the run its call
 * starts — the core's and, through RunRequest.logger, the backend's — and
 * only that run's: passed explicitly, with no ambient context to follow.
 */

interface Line {
  level: string;
  message: string;
  [field: string]: unknown;
}

/** A logger that records each line with its child's fields merged in, as pino's adapter does. */
function recordingLogger(lines: Line[], bound: Record<string, unknown> = {}): Logger {
  const at =
    (level: string) =>
    (message: string, fields?: Record<string, unknown>): void => {
      lines.push({ ...bound, ...fields, level, message });
    };
  return {
    debug: at("debug"),
    info: at("info"),
    warn: at("warn"),
    error: at("error"),
    child: (fields) => recordingLogger(lines, { ...bound, ...fields }),
  };
}

/** A run that logs through the logger the Runtime hands it, then answers. */
const loggingReply: RunScript = async (request, sink) => {
  request.logger?.info("backend line");
  await sink.commit({ case: "assistantMessage", value: { $typeName: "worker_runtime.v1.AssistantMessage", text: "ok" } });
  return { kind: "completed", stopReason: StopReason.END_TURN };
};

/** A run that commits a tool call, waits for its approval (asked again when resumed), logs and answers. */
const approvalScript = awaitApproval((request) => request.logger?.info("backend line"));

let lines: Line[];
let runtime: Runtime | undefined;
let dir: string | undefined;

beforeEach(() => {
  lines = [];
});
afterEach(async () => {
  await runtime?.close();
  runtime = undefined;
  if (dir) await rm(dir, { recursive: true, force: true });
  dir = undefined;
});

async function start(backend: ScriptedBackend, store?: RuntimeStore): Promise<Runtime> {
  runtime = await createRuntime({ logger: recordingLogger(lines), executionBackend: backend, ...(store ? { store } : {}) });
  return runtime;
}

async function newWorker(rt: Runtime): Promise<WorkerRef> {
  const { worker } = await rt.createWorker(create(CreateWorkerRequestSchema, { runtimeId: rt.runtimeId }));
  if (!worker?.ref) throw new Error("no worker");
  return worker.ref;
}

async function waitFor(rt: Runtime, worker: WorkerRef, runId: string, status: RunStatus): Promise<void> {
  await eventually(async () => (await rt.getRun({ worker, runId })).status === status, 5_000, `run ${runId} ${RunStatus[status]}`);
}

const linesOf = (runId: string, message: string): Line[] => lines.filter((line) => line.run_id === runId && line.message === message);

describe("a run's log fields", () => {
  it("come from the call that sent its input, on the core's lines and the backend's, each run its own", async () => {
    const rt = await start(new ScriptedBackend(loggingReply));
    const worker = await newWorker(rt);
    const send = (requestId: string) =>
      rt.sendInput(create(SendInputRequestSchema, { worker, input: { text: "hi" } }), {
        logFields: { request_id: requestId, rpc_method: "svc/SendInput" },
      });
    const first = await send("req-a");
    await waitFor(rt, worker, first.runId, RunStatus.COMPLETED);
    const second = await send("req-b");
    await waitFor(rt, worker, second.runId, RunStatus.COMPLETED);
    const third = await rt.sendInput(create(SendInputRequestSchema, { worker, input: { text: "hi" } }));
    await waitFor(rt, worker, third.runId, RunStatus.COMPLETED);

    const ids = (runId: string) => ({ worker_id: worker.workerId, run_id: runId });
    for (const message of ["backend line", "run executed"]) {
      expect(linesOf(first.runId, message)).toEqual([
        expect.objectContaining({ ...ids(first.runId), request_id: "req-a", rpc_method: "svc/SendInput" }),
      ]);
      expect(linesOf(second.runId, message)).toEqual([expect.objectContaining({ ...ids(second.runId), request_id: "req-b" })]);
      // Without fields a run's lines name its worker and run only.
      expect(linesOf(third.runId, message)).toEqual([expect.objectContaining(ids(third.runId))]);
      expect(linesOf(third.runId, message)[0]).not.toHaveProperty("request_id");
    }
  });

  it("stay those of the sending call when another call decides a live approval", async () => {
    const rt = await start(new ScriptedBackend(approvalScript));
    const worker = await newWorker(rt);
    const run = await rt.sendInput(create(SendInputRequestSchema, { worker, input: { text: "write" } }), {
      logFields: { request_id: "req-send" },
    });
    await waitFor(rt, worker, run.runId, RunStatus.AWAITING_APPROVAL);
    await rt.resolveApproval(
      create(ResolveApprovalRequestSchema, { worker, runId: run.runId, toolCallId: "c1", decision: ApprovalDecision.APPROVE }),
      { logFields: { request_id: "req-approve" } },
    );
    await waitFor(rt, worker, run.runId, RunStatus.COMPLETED);
    expect(linesOf(run.runId, "backend line")).toEqual([expect.objectContaining({ request_id: "req-send" })]);
    expect(linesOf(run.runId, "run executed")).toEqual([expect.objectContaining({ request_id: "req-send" })]);
  });

  it("are those of the ResolveApproval that resumes a parked run", async () => {
    dir = await mkdtemp(path.join(tmpdir(), "wr-run-log-fields-"));
    const before = await start(new ScriptedBackend(approvalScript), createFileStore({ dataDir: dir }));
    const worker = await newWorker(before);
    const run = await before.sendInput(create(SendInputRequestSchema, { worker, input: { text: "write" } }), {
      logFields: { request_id: "req-send" },
    });
    await waitFor(before, worker, run.runId, RunStatus.AWAITING_APPROVAL);
    await before.close();
    runtime = undefined;
    lines.length = 0;

    const after = await start(new ScriptedBackend(approvalScript), createFileStore({ dataDir: dir }));
    await after.resolveApproval(
      create(ResolveApprovalRequestSchema, { worker, runId: run.runId, toolCallId: "c1", decision: ApprovalDecision.APPROVE }),
      { logFields: { request_id: "req-approve", rpc_method: "svc/ResolveApproval" } },
    );
    await waitFor(after, worker, run.runId, RunStatus.COMPLETED);
    const resumed = { request_id: "req-approve", rpc_method: "svc/ResolveApproval", run_id: run.runId };
    expect(linesOf(run.runId, "backend line")).toEqual([expect.objectContaining(resumed)]);
    expect(linesOf(run.runId, "run executed")).toEqual([expect.objectContaining(resumed)]);
  });
});
