import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { type CreateWorkerRequest, CreateWorkerRequestSchema } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { ResolveApprovalRequestSchema, SendInputRequestSchema } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import { ApprovalDecision, ApprovalDecisionSchema } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import { type RunStatus, RunStatusSchema } from "../../gen/worker_runtime/v1/run_pb.js";
import { createRuntime, RuntimeError } from "../../src/runtime/index.js";
import { checkEnum } from "../../src/runtime/validation.js";
import { ScriptedBackend } from "../support/scripted-backend.js";

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

describe("text fields through the embedded API", () => {
  // The wire cannot carry a lone UTF-16 surrogate (the decoders refuse it: test/server/wire-decoding.test.ts), and
  // create() refuses one, but an embedder can assign one to a field, which toBinary (so every store) silently writes as
  // U+FFFD.
  it("refuse a lone surrogate naming the field, and take a whole surrogate pair", async () => {
    const runtime = await createRuntime({ executionBackend: new ScriptedBackend() });
    const { runtimeId } = runtime;
    const lone = "a\ud800b";
    const createWith = (set: (request: CreateWorkerRequest) => void) => () => {
      const request = create(CreateWorkerRequestSchema, { runtimeId });
      set(request);
      return runtime.createWorker(request);
    };
    const { worker } = await runtime.createWorker(create(CreateWorkerRequestSchema, { runtimeId }));
    const refusals: [string, () => Promise<unknown>][] = [
      ["display_name", createWith((r) => (r.displayName = lone))],
      ["intent", createWith((r) => (r.intent = "\udc00"))],
      ["labels[team]", createWith((r) => (r.labels = { team: lone }))],
      ["initial_input.text", createWith((r) => (r.initialInput = { $typeName: "worker_runtime.v1.Input", text: lone }))],
      [
        "input.text",
        () => {
          const request = create(SendInputRequestSchema, { worker: worker?.ref, input: { text: "x" } });
          if (request.input) request.input.text = lone;
          return runtime.sendInput(request);
        },
      ],
      [
        "tool_call_id",
        () => {
          const request = create(ResolveApprovalRequestSchema, {
            worker: worker?.ref,
            runId: "r1",
            toolCallId: "x",
            decision: ApprovalDecision.REJECT,
          });
          request.toolCallId = lone;
          return runtime.resolveApproval(request);
        },
      ],
    ];
    for (const [field, call] of refusals) {
      const error = await call().then(
        () => undefined,
        (thrown: unknown) => thrown,
      );
      expect(error, field).toBeInstanceOf(RuntimeError);
      expect((error as RuntimeError).reason, field).toBe(ErrorReason.INVALID_ARGUMENT);
      expect((error as RuntimeError).metadata["field"], field).toBe(field);
    }
    const run = await runtime.sendInput(create(SendInputRequestSchema, { worker: worker?.ref, input: { text: "a\ud83d\ude00b" } }));
    expect(run.input?.text).toBe("a\u{1F600}b");
    await runtime.close();
  });
});
