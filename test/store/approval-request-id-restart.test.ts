import { create } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { WorkerRefSchema, type WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { ApprovalDecision } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import { createFileStore } from "../../src/store/fs/index.js";
import { expectReason } from "../support/errors.js";
import { eventually, startHarness, type Clients, type Harness } from "../support/harness.js";
import { awaitApproval, ScriptedBackend } from "../support/scripted-backend.js";
import { tempDataDir } from "./fs-support.js";

/**
 * A ResolveApproval's request_id is kept with the run it decided
 * (Run.resolved_approvals, in the run's stored record), so a retry after a
 * restart on the file store is answered as before the restart. A run stored
 * before the field existed (a wait parked across the restart) takes one.
 */

let dir: string;
let cleanup: () => Promise<void>;
let harness: Harness | undefined;
beforeEach(async () => ({ dir, cleanup } = await tempDataDir()));
afterEach(async () => {
  await harness?.close();
  harness = undefined;
  await cleanup();
});

async function serve(): Promise<Clients> {
  await harness?.close();
  harness = await startHarness({ store: createFileStore({ dataDir: dir }), executionBackend: new ScriptedBackend(awaitApproval()) });
  return harness.connect("grpc");
}

/** A new worker with a run waiting for approval of call c1. */
async function awaiting(clients: Clients): Promise<{ ref: WorkerRef; runId: string }> {
  const runtimeId = harness?.runtime.runtimeId ?? "";
  const { worker } = await clients.catalog.createWorker({ runtimeId });
  const ref = create(WorkerRefSchema, { runtimeId, workerId: worker?.ref?.workerId ?? "" });
  const runId = (await clients.interaction.sendInput({ worker: ref, input: { text: "write" } })).run?.runId ?? "";
  await eventually(async () => (await clients.interaction.getRun({ worker: ref, runId })).run?.status === RunStatus.AWAITING_APPROVAL);
  return { ref, runId };
}

async function ends(clients: Clients, ref: WorkerRef, runId: string): Promise<void> {
  await eventually(async () => (await clients.interaction.getRun({ worker: ref, runId })).run?.status === RunStatus.COMPLETED);
}

describe("ResolveApproval request ids across restarts on the file store", () => {
  it("answers a retry after a restart with the run, and a changed request with IDEMPOTENCY_CONFLICT", async () => {
    let clients = await serve();
    const { ref, runId } = await awaiting(clients);
    const request = { worker: ref, runId, toolCallId: "c1", decision: ApprovalDecision.APPROVE, requestId: "approve-1" };
    await clients.interaction.resolveApproval(request);
    await ends(clients, ref, runId);

    clients = await serve();
    const retried = await clients.interaction.resolveApproval(request);
    expect(retried.run?.status).toBe(RunStatus.COMPLETED);
    expect(retried.run?.resolvedApprovals.map((r) => r.requestId)).toEqual(["approve-1"]);
    await expectReason(
      () => clients.interaction.resolveApproval({ ...request, decision: ApprovalDecision.REJECT }),
      Code.AlreadyExists,
      ErrorReason.IDEMPOTENCY_CONFLICT,
    );
    await expectReason(
      () => clients.interaction.resolveApproval({ ...request, requestId: "" }),
      Code.FailedPrecondition,
      ErrorReason.APPROVAL_NOT_PENDING,
    );
  });

  it("remembers a decision that resumed a parked run, across the next restart", async () => {
    let clients = await serve();
    const { ref, runId } = await awaiting(clients);
    clients = await serve(); // the wait is parked, its run stored without resolved approvals
    const request = { worker: ref, runId, toolCallId: "c1", decision: ApprovalDecision.REJECT, reason: "no", requestId: "reject-1" };
    const decided = await clients.interaction.resolveApproval(request);
    expect(decided.run?.resolvedApprovals).toEqual([expect.objectContaining({ requestId: "reject-1", approved: false, reason: "no" })]);
    expect((await clients.interaction.resolveApproval(request)).run?.runId).toBe(runId);
    await ends(clients, ref, runId);

    clients = await serve();
    expect((await clients.interaction.resolveApproval(request)).run?.status).toBe(RunStatus.COMPLETED);
    await expectReason(
      () => clients.interaction.resolveApproval({ ...request, reason: "other" }),
      Code.AlreadyExists,
      ErrorReason.IDEMPOTENCY_CONFLICT,
    );
  });
});
