import { describe, expect, it } from "vitest";
import { ApprovalDecision, ApprovalDecisionSchema } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import { type RunStatus, RunStatusSchema } from "../../gen/worker_runtime/v1/run_pb.js";
import { checkEnum } from "../../src/runtime/validation.js";

describe("enum checks", () => {
  it("accept every value the generated descriptor knows, so a new value needs no second list", () => {
    for (const { number } of RunStatusSchema.values) expect(checkEnum("status", number as RunStatus, RunStatusSchema)).toBe(number);
  });

  it("refuse numbers the descriptor does not know, naming the field", () => {
    expect(() => checkEnum("status", 99 as RunStatus, RunStatusSchema)).toThrow("status: unknown value 99");
    expect(() => checkEnum("status", -1 as RunStatus, RunStatusSchema)).toThrow("status: unknown value -1");
  });

  it("refuse UNSPECIFIED only when the value is required", () => {
    expect(checkEnum("decision", ApprovalDecision.UNSPECIFIED, ApprovalDecisionSchema)).toBe(ApprovalDecision.UNSPECIFIED);
    expect(() => checkEnum("decision", ApprovalDecision.UNSPECIFIED, ApprovalDecisionSchema, { required: true })).toThrow(
      "decision: unknown value 0",
    );
    expect(checkEnum("decision", ApprovalDecision.REJECT, ApprovalDecisionSchema, { required: true })).toBe(ApprovalDecision.REJECT);
  });
});
