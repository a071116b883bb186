import { afterEach, describe, expect, it } from "vitest";
import { RunStatus, StopReason } from "../../gen/worker_runtime/v1/run_pb.js";
import { ApprovalDecision } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { createOpenAIBackend, openAIBackendOptionsFromEnv } from "../../src/engine/index.js";
import type { ExecutionBackend } from "../../src/runtime/index.js";
import { startFakeOpenAI, type FakeOpenAI } from "../support/fake-openai.js";
import { eventually, startHarness, type Harness } from "../support/harness.js";
import { errorReply, reply } from "../support/openai-chunks.js";
import { ScriptedBackend } from "../support/scripted-backend.js";

/**
 * A provider can spell a lone UTF-16 surrogate in its JSON ("\ud800"), which
 * UTF-8 cannot carry. Whatever part of a run holds one (the model's text, a
 * provider's error message, a tool call awaiting approval), the run must
 * still end, and every reader (GetRun, ReadTranscript, over real HTTP/2) must
 * see the same U+FFFD the stored bytes hold. Before, a provider error with a
 * lone surrogate left its run RUNNING for good: the run could not be copied
 * to be recorded.
 */

const LONE = "\ud800";
const REPLACED = "\ufffd";

let fake: FakeOpenAI | undefined;
let harness: Harness | undefined;

afterEach(async () => {
  await harness?.close();
  await fake?.close();
  harness = undefined;
  fake = undefined;
});

async function start(backend: ExecutionBackend) {
  harness = await startHarness({ executionBackend: backend });
  const clients = harness.connect("grpc");
  const runtimeId = (await clients.management.getRuntime({})).runtime?.runtimeId ?? "";
  const worker = (await clients.catalog.createWorker({ runtimeId })).worker?.ref as WorkerRef;
  const runUntil = async (runId: string, done: (status: RunStatus) => boolean) => {
    await eventually(async () => done((await clients.interaction.getRun({ worker, runId })).run?.status ?? 0), 15_000, `run ${runId}`);
    return (await clients.interaction.getRun({ worker, runId })).run;
  };
  return { clients, worker, runUntil };
}

const ended = (status: RunStatus): boolean => status >= RunStatus.COMPLETED;

describe("a lone surrogate from the provider", () => {
  it("in the model's text: the run completes and the transcript holds U+FFFD", async () => {
    fake = await startFakeOpenAI();
    const { clients, worker, runUntil } = await start(
      createOpenAIBackend(openAIBackendOptionsFromEnv({ OPENAI_API_KEY: "sk-test", OPENAI_BASE_URL: fake.baseURL })),
    );
    fake.enqueue(reply({ text: `a${LONE}b` }));
    const { run } = await clients.interaction.sendInput({ worker, input: { text: "hi" } });
    expect((await runUntil(run?.runId ?? "", ended))?.status).toBe(RunStatus.COMPLETED);
    const texts = (await clients.observation.readTranscript({ worker })).entries.flatMap((entry) =>
      entry.content.case === "assistantMessage" ? [entry.content.value.text] : [],
    );
    expect(texts).toEqual([`a${REPLACED}b`]);
  });

  it("in a provider's error message: the run fails with the message, U+FFFD in it, instead of never ending", async () => {
    fake = await startFakeOpenAI();
    const { clients, worker, runUntil } = await start(
      createOpenAIBackend(openAIBackendOptionsFromEnv({ OPENAI_API_KEY: "sk-test", OPENAI_BASE_URL: fake.baseURL })),
    );
    fake.enqueue(errorReply(400, `bad ${LONE} request`));
    const { run } = await clients.interaction.sendInput({ worker, input: { text: "hi" } });
    const failed = await runUntil(run?.runId ?? "", ended);
    expect(failed?.status).toBe(RunStatus.FAILED);
    expect(failed?.error?.message).toContain(`bad ${REPLACED} request`);
    // The failure's notice in the transcript says the same.
    const notices = (await clients.observation.readTranscript({ worker })).entries.filter((entry) =>
      JSON.stringify(entry.content.value ?? {}).includes(`bad ${REPLACED} request`),
    );
    expect(notices).toHaveLength(1);
  });

  it("in a provider's error message: the diagnostic it raises is listed with U+FFFD, not refused", async () => {
    fake = await startFakeOpenAI();
    const { clients, worker, runUntil } = await start(
      createOpenAIBackend(openAIBackendOptionsFromEnv({ OPENAI_API_KEY: "sk-test", OPENAI_BASE_URL: fake.baseURL })),
    );
    // The backend reports the provider problem to the runtime's diagnostics with the provider's text:
    // the first time as a new diagnostic, the second as a new message of the same one.
    for (const text of [`bad ${LONE} request`, `worse ${LONE} request`]) {
      fake.enqueue(errorReply(400, text));
      const { run } = await clients.interaction.sendInput({ worker, input: { text: "hi" } });
      await runUntil(run?.runId ?? "", ended);
      const { diagnostics } = await clients.management.listDiagnostics({});
      const expected = text.replace(LONE, REPLACED);
      expect(diagnostics.map((d) => [d.code, d.message])).toEqual([["provider.rejected", expect.stringContaining(expected)]]);
    }
  });

  it("in a tool call awaiting approval: the run waits with U+FFFD in the call and completes once approved", async () => {
    const backend = new ScriptedBackend();
    backend.enqueue(async (_request, sink, signal) => {
      const call = { toolCallId: "c1", toolName: `write${LONE}`, argumentsJson: `{"path":"a${LONE}"}` };
      const result = await sink.requestApproval(call, signal);
      return result.approved ? { kind: "completed", stopReason: StopReason.END_TURN } : { kind: "cancelled" };
    });
    const { clients, worker, runUntil } = await start(backend);
    const { run } = await clients.interaction.sendInput({ worker, input: { text: "go" } });
    const waiting = await runUntil(run?.runId ?? "", (status) => status === RunStatus.AWAITING_APPROVAL);
    expect(waiting?.pendingApproval?.toolName).toBe(`write${REPLACED}`);
    expect(waiting?.pendingApproval?.argumentsJson).toBe(`{"path":"a${REPLACED}"}`);
    await clients.interaction.resolveApproval({ worker, runId: run?.runId ?? "", toolCallId: "c1", decision: ApprovalDecision.APPROVE });
    expect((await runUntil(run?.runId ?? "", ended))?.status).toBe(RunStatus.COMPLETED);
  });
});
