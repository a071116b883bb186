import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { ApprovalDecision } from "../../../gen/worker_runtime/v1/worker_interaction_pb.js";
import { decisionRequestId } from "../../../src/cli/client/decision-request-id.js";
import { sha256Hex } from "../../../src/cli/client/sha256.js";

describe("decisionRequestId", () => {
  it("hashes as node:crypto does, across block boundaries and multi-byte text", () => {
    const texts = ["", "abc", "é漢字🙂", ...[55, 56, 63, 64, 65, 119, 120, 1000].map((length) => "x".repeat(length))];
    for (const text of texts) expect(sha256Hex(text)).toBe(createHash("sha256").update(text).digest("hex"));
  });

  it("is the id the CLI has always sent (its retries across an upgrade still match)", () => {
    const digest = createHash("sha256").update(`${ApprovalDecision.REJECT}\0call-1\0too risky`).digest("hex");
    expect(decisionRequestId(ApprovalDecision.REJECT, "call-1", "too risky")).toBe(`cli-${digest.slice(0, 40)}`);
    expect(decisionRequestId(ApprovalDecision.APPROVE, "call-1", "")).not.toBe(decisionRequestId(ApprovalDecision.REJECT, "call-1", ""));
  });
});
