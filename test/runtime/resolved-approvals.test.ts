import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { RunSchema } from "../../gen/worker_runtime/v1/run_pb.js";
import { ApprovalDecision } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import { isRetryOf, noteDecision, unnoteDecision } from "../../src/runtime/approval-retry.js";
import { MAX_RESOLVED_APPROVALS } from "../../src/runtime/limits.js";

const decision = (requestId: string, toolCallId = "c1") => ({
  runId: "r1",
  toolCallId,
  decision: ApprovalDecision.APPROVE,
  reason: "",
  requestId,
});

describe("a run's resolved approvals", () => {
  it("keeps the last MAX_RESOLVED_APPROVALS decisions with a request id, and none without", () => {
    const run = create(RunSchema, { runId: "r1" });
    noteDecision(run, decision(""));
    expect(run.resolvedApprovals).toEqual([]);
    for (let i = 0; i <= MAX_RESOLVED_APPROVALS; i++) noteDecision(run, decision(`req-${i}`, `c${i}`));
    expect(run.resolvedApprovals.length).toBe(MAX_RESOLVED_APPROVALS);
    expect(isRetryOf(run, decision("req-0", "c0"))).toBe(false);
    expect(isRetryOf(run, decision(`req-${MAX_RESOLVED_APPROVALS}`, `c${MAX_RESOLVED_APPROVALS}`))).toBe(true);
  });

  it("forgets a decision taken back (its write failed)", () => {
    const run = create(RunSchema, { runId: "r1" });
    noteDecision(run, decision("req-1"));
    unnoteDecision(run, decision("req-1"));
    expect(isRetryOf(run, decision("req-1"))).toBe(false);
  });
});
