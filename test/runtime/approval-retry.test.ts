import { create } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { ProfileSchema } from "../../gen/worker_runtime/v1/profile_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { ApprovalDecision } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import type { Worker } from "../../gen/worker_runtime/v1/worker_pb.js";
import { companionProfile } from "../../src/engine/index.js";
import { expectReason } from "../support/errors.js";
import { PROTOCOLS } from "../support/harness.js";
import { reply } from "../support/openai-chunks.js";
import { ended, startOpenAIServer, type OpenAIServer } from "../e2e/openai-harness.js";

/**
 * ResolveApproval with a request_id is safe to retry: an answer lost on the
 * network is asked again and answered with the run, not APPROVAL_NOT_PENDING,
 * so a client can tell its own decision from someone else's. Real server,
 * generated clients over HTTP/2, the fake OpenAI provider.
 */
describe.each(PROTOCOLS)("ResolveApproval retries (%s)", (protocol) => {
  let s: OpenAIServer;
  beforeEach(async () => {
    const careful = create(ProfileSchema, { ...companionProfile("gpt-4o-mini"), name: "careful", approvalRequiredTools: ["write_file"] });
    s = await startOpenAIServer(protocol, { profiles: [careful] });
  });
  afterEach(async () => {
    await s.close();
  });

  /** A run waiting for approval of write_file call `w1`, then of `w2`, then answering. */
  async function awaiting(calls = ["w1"]): Promise<{ worker: Worker; runId: string }> {
    const worker = await s.newWorker({ capabilities: ["fs.write"], path: "ap", profile: "careful" });
    const write = (id: string) =>
      reply({ toolCalls: [{ id, name: "write_file", arguments: JSON.stringify({ path: `${id}.txt`, content: id }) }] });
    s.fake.enqueue(...calls.map(write), reply({ text: "ok" }));
    const { run } = await s.clients.interaction.sendInput({ worker: worker.ref, input: { text: "write" } });
    const runId = run?.runId ?? "";
    await s.waitForRun(worker, runId, (r) => r.status === RunStatus.AWAITING_APPROVAL, "awaiting");
    return { worker, runId };
  }

  it("answers a repeated APPROVE with the run as it is now, and the tool ran once", async () => {
    const { worker, runId } = await awaiting();
    const request = { worker: worker.ref, runId, toolCallId: "w1", decision: ApprovalDecision.APPROVE, requestId: "approve-w1" };
    const first = await s.clients.interaction.resolveApproval(request);
    expect(first.run?.status).toBe(RunStatus.RUNNING);
    expect(first.run?.resolvedApprovals).toEqual([expect.objectContaining({ requestId: "approve-w1", toolCallId: "w1", approved: true })]);
    const again = await s.clients.interaction.resolveApproval(request);
    expect(again.run?.runId).toBe(runId);
    const done = await s.waitForRun(worker, runId, ended, "end");
    expect(done.status).toBe(RunStatus.COMPLETED);
    // After the run ended the retry still answers, with its final state.
    const late = await s.clients.interaction.resolveApproval(request);
    expect(late.run?.status).toBe(RunStatus.COMPLETED);
    expect(late.run?.resolvedApprovals.map((r) => r.requestId)).toEqual(["approve-w1"]);
    expect(s.fake.requests.length).toBe(2);
  });

  it("refuses the same request_id with another decision, tool call or reason as IDEMPOTENCY_CONFLICT", async () => {
    const { worker, runId } = await awaiting(["w1", "w2"]);
    const base = { worker: worker.ref, runId, toolCallId: "w1", decision: ApprovalDecision.REJECT, reason: "no", requestId: "decide-1" };
    await s.clients.interaction.resolveApproval(base);
    await s.waitForRun(worker, runId, (r) => r.pendingApproval?.toolCallId === "w2", "awaiting w2");
    for (const other of [{ decision: ApprovalDecision.APPROVE }, { toolCallId: "w2" }, { reason: "never" }]) {
      const detail = await expectReason(
        () => s.clients.interaction.resolveApproval({ ...base, ...other }),
        Code.AlreadyExists,
        ErrorReason.IDEMPOTENCY_CONFLICT,
      );
      expect(detail.metadata).toMatchObject({ request_id: "decide-1", run_id: runId });
    }
    // The conflict decided nothing: w2 still waits, and a second key decides it.
    expect((await s.clients.interaction.getRun({ worker: worker.ref, runId })).run?.pendingApproval?.toolCallId).toBe("w2");
    const second = await s.clients.interaction.resolveApproval({ ...base, toolCallId: "w2", requestId: "decide-2" });
    expect(second.run?.resolvedApprovals.map((r) => r.requestId)).toEqual(["decide-1", "decide-2"]);
    // The first key's retry is still recognised while the run went on.
    expect((await s.clients.interaction.resolveApproval(base)).run?.runId).toBe(runId);
    await s.waitForRun(worker, runId, ended, "end");
  });

  it("without a request_id a repeat is refused as before, and nothing is remembered", async () => {
    const { worker, runId } = await awaiting();
    const request = { worker: worker.ref, runId, toolCallId: "w1", decision: ApprovalDecision.APPROVE };
    const first = await s.clients.interaction.resolveApproval(request);
    expect(first.run?.resolvedApprovals).toEqual([]);
    await expectReason(() => s.clients.interaction.resolveApproval(request), Code.FailedPrecondition, ErrorReason.APPROVAL_NOT_PENDING);
    await s.waitForRun(worker, runId, ended, "end");
  });

  it("a request_id another decision did not use is no retry: someone else's decision stays APPROVAL_NOT_PENDING", async () => {
    const { worker, runId } = await awaiting();
    const request = { worker: worker.ref, runId, toolCallId: "w1", decision: ApprovalDecision.APPROVE };
    await s.clients.interaction.resolveApproval({ ...request, requestId: "theirs" });
    await expectReason(
      () => s.clients.interaction.resolveApproval({ ...request, requestId: "mine" }),
      Code.FailedPrecondition,
      ErrorReason.APPROVAL_NOT_PENDING,
    );
    await s.waitForRun(worker, runId, ended, "end");
  });
});
