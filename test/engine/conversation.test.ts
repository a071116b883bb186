import { describe, expect, it } from "vitest";
import { create } from "@bufbuild/protobuf";
import { TranscriptEntrySchema, type TranscriptEntry } from "../../gen/worker_runtime/v1/transcript_pb.js";
import type { ChatCompletionMessageParam } from "openai/resources/chat/completions";
import { messagesFromTranscript, UNANSWERED_CALL } from "../../src/engine/conversation.js";
import { boundHistory } from "../../src/engine/history-bounds.js";

function entry(runId: string, content: TranscriptEntry["content"]): TranscriptEntry {
  return create(TranscriptEntrySchema, { runId, content });
}
const user = (run: string, text: string) =>
  entry(run, { case: "userMessage", value: { $typeName: "worker_runtime.v1.UserMessage", text } });
const said = (run: string, text: string) =>
  entry(run, { case: "assistantMessage", value: { $typeName: "worker_runtime.v1.AssistantMessage", text } });
const toolCall = (run: string, id: string, argumentsJson = "{}") =>
  entry(run, {
    case: "toolCall",
    value: { $typeName: "worker_runtime.v1.ToolCall", toolCallId: id, toolName: "read_file", argumentsJson },
  });
const toolResult = (run: string, id: string, output: string) =>
  entry(run, {
    case: "toolResult",
    value: { $typeName: "worker_runtime.v1.ToolResult", toolCallId: id, toolName: "read_file", output, isError: false, truncated: false },
  });

describe("messagesFromTranscript", () => {
  it("joins a continued answer and groups text with the tool calls of its turn", () => {
    expect(
      messagesFromTranscript([
        user("r1", "q"),
        said("r1", "Let me "),
        said("r1", "look."),
        toolCall("r1", "c1"),
        toolResult("r1", "c1", "data"),
        said("r1", "Found it."),
      ]),
    ).toEqual([
      { role: "user", content: "q" },
      {
        role: "assistant",
        content: "Let me look.",
        tool_calls: [{ id: "c1", type: "function", function: { name: "read_file", arguments: "{}" } }],
      },
      { role: "tool", tool_call_id: "c1", content: "data" },
      { role: "assistant", content: "Found it." },
    ]);
  });

  it("drops results whose call fell out of the window and answers calls that never got a result", () => {
    expect(messagesFromTranscript([toolResult("r0", "old", "stale"), user("r1", "q"), toolCall("r1", "c1"), user("r2", "next")])).toEqual([
      { role: "user", content: "q" },
      {
        role: "assistant",
        content: null,
        tool_calls: [{ id: "c1", type: "function", function: { name: "read_file", arguments: "{}" } }],
      },
      { role: "tool", tool_call_id: "c1", content: UNANSWERED_CALL },
      { role: "user", content: "next" },
    ]);
  });

  it("replays arguments that are not a JSON object as {}", () => {
    const messages = messagesFromTranscript([
      user("r1", "q"),
      toolCall("r1", "cut", '{"path": "a.t'),
      toolCall("r1", "list", "[1, 2]"),
      toolCall("r1", "empty", ""),
      toolCall("r1", "fine", '{"path":"a.txt"}'),
    ]);
    const assistant = messages[1] as { tool_calls: { function: { arguments: string } }[] };
    expect(assistant.tool_calls.map((call) => call.function.arguments)).toEqual(["{}", "{}", "{}", '{"path":"a.txt"}']);
  });
});

describe("boundHistory", () => {
  const size = (messages: ChatCompletionMessageParam[]) => messages.reduce((sum, m) => sum + Buffer.byteLength(JSON.stringify(m)), 0);

  it("drops the oldest exchanges, starting at a user message, until the history fits", () => {
    const history = messagesFromTranscript([
      user("r1", "first"),
      toolCall("r1", "c1"),
      toolResult("r1", "c1", "a".repeat(700)),
      said("r1", "done one"),
      user("r2", "second"),
      said("r2", "b".repeat(700)),
      user("r3", "third"),
    ]);
    const bounded = boundHistory(history, 1200);
    expect(bounded[0]).toEqual({ role: "user", content: "second" });
    expect(bounded.at(-1)).toEqual({ role: "user", content: "third" });
    expect(size(bounded)).toBeLessThanOrEqual(1200);
    expect(boundHistory(history, 100_000)).toEqual(history);
  });

  it("cuts oversized tool output and arguments when replaying, saying so, and keeps the newest input", () => {
    const history = messagesFromTranscript([
      user("r1", "write it"),
      toolCall("r1", "c1", JSON.stringify({ path: "big.txt", content: "x".repeat(50_000) })),
      toolResult("r1", "c1", "y".repeat(50_000)),
      user("r2", "z".repeat(30_000)),
    ]);
    const bounded = boundHistory(history, 16_000);
    const call = (bounded[1] as { tool_calls: { function: { arguments: string } }[] }).tool_calls[0];
    expect(JSON.parse(call?.function.arguments ?? "")).toEqual({
      omitted_from_history: "the 50031-byte arguments of this call were left out of the replayed history",
    });
    expect(bounded[2]?.content).toMatch(
      /^y{2000}\n\[this message in the replayed history truncated: showing the first 2000 of 50000 bytes\]$/,
    );
    expect(bounded.at(-1)?.content).toMatch(/^z{2000}\n\[this message/);
    expect(size(bounded)).toBeLessThanOrEqual(16_000);
  });
});
