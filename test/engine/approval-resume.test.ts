import { create } from "@bufbuild/protobuf";
import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { StopReason } from "../../gen/worker_runtime/v1/run_pb.js";
import { AssistantMessageSchema, ToolCallSchema } from "../../gen/worker_runtime/v1/transcript_pb.js";
import { UNANSWERED_CALL } from "../../src/engine/conversation.js";
import type { ApprovalResult, PendingToolCall } from "../../src/runtime/index.js";
import { reply, type ScriptedToolCall } from "../support/openai-chunks.js";
import { RecordingSink, runRequest } from "../support/recording-sink.js";
import { profileWith, startHarness, type Harness } from "./harness.js";

/**
 * Approvals of several calls in one turn, and a run resumed after its
 * approval wait outlived the process (RunRequest.resume, issue 7), against
 * the real engine and the fake provider.
 */

const call = (id: string, args: object): ScriptedToolCall => ({ id, name: "write_file", arguments: JSON.stringify(args) });
const REJECTED = "The user rejected this tool call, so it did not run.";

let h: Harness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

/** Answers approvals from a table by tool call id, recording the order asked. */
function decisions(table: Record<string, ApprovalResult>, asked: string[]) {
  return (pending: PendingToolCall): Promise<ApprovalResult> => {
    asked.push(pending.toolCallId);
    const decision = table[pending.toolCallId];
    return decision ? Promise.resolve(decision) : Promise.reject(new Error(`unexpected approval of ${pending.toolCallId}`));
  };
}

describe("approvals of several calls in one turn", () => {
  it("are decided one by one: rejecting the first does not abort the second, and the run continues", async () => {
    h = await startHarness();
    h.fake.enqueue(
      reply({ toolCalls: [call("w1", { path: "one.txt", content: "1" }), call("w2", { path: "two.txt", content: "2" })] }),
      reply({ text: "wrote two only" }),
    );
    const asked: string[] = [];
    const { outcome, sink } = await h.run({
      input: "write both",
      profile: profileWith(h.companion, { approvalRequiredTools: ["write_file"] }),
      capabilities: ["fs.write"],
      onApproval: decisions({ w1: { approved: false, reason: "" }, w2: { approved: true, reason: "" } }, asked),
    });
    expect(outcome.kind).toBe("completed");
    expect(asked).toEqual(["w1", "w2"]);
    expect(sink.committed("toolResult").map((r) => [r.toolCallId, r.isError])).toEqual([
      ["w1", true],
      ["w2", false],
    ]);
    await expect(stat(join(h.workspace, "one.txt"))).rejects.toThrow();
    expect(await readFile(join(h.workspace, "two.txt"), "utf8")).toBe("2");
    const tools = h.fake.requests[1]?.body.messages.filter((m) => m.role === "tool") ?? [];
    expect(tools.map((m) => [m.tool_call_id, m.content?.startsWith(REJECTED)])).toEqual([
      ["w1", true],
      ["w2", false],
    ]);
  });
});

describe("a resumed run (RunRequest.resume)", () => {
  /** A transcript as a run leaves it when it waits for approval of w1 of two calls: input, text, two calls. */
  function waitingTranscript(runId: string): RecordingSink {
    const sink = new RecordingSink(runId);
    sink.commitInput("write both");
    void sink.commit({ case: "assistantMessage", value: create(AssistantMessageSchema, { text: "Writing." }) });
    for (const [id, path] of [
      ["w1", "one.txt"],
      ["w2", "two.txt"],
    ] as const) {
      const argumentsJson = JSON.stringify({ path, content: id });
      void sink.commit({ case: "toolCall", value: create(ToolCallSchema, { toolCallId: id, toolName: "write_file", argumentsJson }) });
    }
    return sink;
  }

  async function resume(harness: Harness, init: { approvalRequired: string[]; table: Record<string, ApprovalResult>; asked: string[] }) {
    const runId = "run-resumed";
    const seeded = waitingTranscript(runId);
    const sink = new RecordingSink(runId, decisions(init.table, init.asked));
    sink.transcript.push(...seeded.transcript);
    const request = runRequest(sink, {
      input: "write both",
      runId,
      profile: profileWith(harness.companion, { approvalRequiredTools: init.approvalRequired }),
      workspaceDir: harness.workspace,
      capabilities: ["fs.write"],
    });
    request.run.turns = 1;
    const outcome = await harness.backend.execute({ ...request, resume: { toolCallId: "w1" } }, sink, new AbortController().signal);
    return { outcome, sink };
  }

  it("runs the last turn's unrun calls first, asking each for approval, then asks the model from the transcript", async () => {
    h = await startHarness();
    h.fake.enqueue(reply({ text: "one was written" }));
    const asked: string[] = [];
    const { outcome, sink } = await resume(h, {
      approvalRequired: ["write_file"],
      table: { w1: { approved: true, reason: "" }, w2: { approved: false, reason: "not two" } },
      asked,
    });
    expect(outcome).toEqual({ kind: "completed", stopReason: StopReason.END_TURN });
    expect(asked).toEqual(["w1", "w2"]);
    expect(await readFile(join(h.workspace, "one.txt"), "utf8")).toBe("w1");
    await expect(stat(join(h.workspace, "two.txt"))).rejects.toThrow();
    // Nothing was committed before the results: no second input, no repeated call.
    const committed = sink.events.flatMap((e) => (e.type === "commit" ? [e.entry.content.case] : []));
    expect(committed).toEqual(["toolResult", "toolResult", "assistantMessage"]);
    expect(sink.turns).toBe(1);

    expect(h.fake.requests).toHaveLength(1);
    const messages = h.fake.requests[0]?.body.messages ?? [];
    expect(messages.filter((m) => m.role === "user").map((m) => m.content)).toEqual(["write both"]);
    expect(messages.slice(-3).map((m) => [m.role, m.tool_call_id])).toEqual([
      ["assistant", undefined],
      ["tool", "w1"],
      ["tool", "w2"],
    ]);
    expect(messages.at(-3)?.tool_calls?.map((c) => c.id)).toEqual(["w1", "w2"]);
    expect(messages.at(-1)?.content).toBe(`${REJECTED} Reason: not two`);
    expect(messages.map((m) => m.content)).not.toContain(UNANSWERED_CALL);
  });

  it("asks about the decided call even if the profile no longer requires approval, so a rejection holds", async () => {
    h = await startHarness();
    h.fake.enqueue(reply({ text: "ok" }));
    const asked: string[] = [];
    const { outcome } = await resume(h, { approvalRequired: [], table: { w1: { approved: false, reason: "" } }, asked });
    expect(outcome.kind).toBe("completed");
    // w1 was asked about (the decision), w2 needs no approval and ran.
    expect(asked).toEqual(["w1"]);
    await expect(stat(join(h.workspace, "one.txt"))).rejects.toThrow();
    expect(await readFile(join(h.workspace, "two.txt"), "utf8")).toBe("w2");
  });

  it("replays the run's own input whole, however much of the history budget it takes", async () => {
    h = await startHarness({ historyMaxBytes: 8_000 });
    const runId = "run-resumed-long-input";
    const input = `summarise this: ${"lorem ipsum ".repeat(1_500)}`;
    const sink = new RecordingSink(runId, decisions({ w1: { approved: true, reason: "" } }, []));
    sink.commitInput(input);
    const argumentsJson = JSON.stringify({ path: "one.txt", content: "w1" });
    void sink.commit({ case: "toolCall", value: create(ToolCallSchema, { toolCallId: "w1", toolName: "write_file", argumentsJson }) });
    const request = runRequest(sink, { input, runId, profile: h.companion, workspaceDir: h.workspace, capabilities: ["fs.write"] });
    request.run.turns = 1;
    h.fake.enqueue(reply({ text: "summarised" }));
    const outcome = await h.backend.execute({ ...request, resume: { toolCallId: "w1" } }, sink, new AbortController().signal);
    expect(outcome).toEqual({ kind: "completed", stopReason: StopReason.END_TURN });
    const users = (h.fake.requests[0]?.body.messages ?? []).filter((m) => m.role === "user");
    expect(users.map((m) => String(m.content).length)).toEqual([input.length]);
    expect(users[0]?.content).toBe(input);
  });

  it("counts turns on from the run's: a run resumed at its last turn stops after the tools with MAX_TURNS", async () => {
    h = await startHarness();
    h.fake.enqueue(reply({ toolCalls: [call("w3", { path: "three.txt", content: "3" })] }));
    const asked: string[] = [];
    const runId = "run-at-limit";
    const seeded = waitingTranscript(runId);
    const sink = new RecordingSink(runId, decisions({ w1: { approved: true, reason: "" }, w2: { approved: true, reason: "" } }, asked));
    sink.transcript.push(...seeded.transcript);
    const request = runRequest(sink, {
      input: "write both",
      runId,
      profile: profileWith(h.companion, { approvalRequiredTools: ["write_file"], maxTurns: 2 }),
      workspaceDir: h.workspace,
      capabilities: ["fs.write"],
    });
    request.run.turns = 1;
    const outcome = await h.backend.execute({ ...request, resume: { toolCallId: "w1" } }, sink, new AbortController().signal);
    // Turn 2 is the limit: its call is not run.
    expect(outcome).toEqual({ kind: "completed", stopReason: StopReason.MAX_TURNS });
    expect(h.fake.requests).toHaveLength(1);
    await expect(stat(join(h.workspace, "three.txt"))).rejects.toThrow();
    expect(sink.committed("toolResult").at(-1)).toMatchObject({ toolCallId: "w3", isError: true });
  });
});
