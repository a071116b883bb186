import type {
  ChatCompletionAssistantMessageParam,
  ChatCompletionMessageFunctionToolCall,
  ChatCompletionMessageParam,
} from "openai/resources/chat/completions";
import type { ToolCall, TranscriptEntry } from "../../gen/worker_runtime/v1/transcript_pb.js";
import { CONTINUE_PROMPT, SPLICE_NOTICE_CODE } from "./splice.js";

/**
 * Turns committed transcript entries into chat messages. The transcript is
 * the source of truth, so a worker's history survives restarts and reads
 * the same whichever process runs it.
 *
 * - Consecutive assistant text and tool calls of one run form one assistant
 *   message (they came from one model turn, or from one answer continued
 *   after a cut stream, see model-turn.ts).
 * - Reasoning and notices are not sent back: providers reject or ignore
 *   reasoning in input, and notices are the runtime's, not the model's.
 *   The exception is a splice notice (an answer cut and continued): it is
 *   replayed as what the model was actually asked, the continue prompt
 *   between the cut answer and its continuation.
 * - The history window is bounded, so it can start or end mid tool call.
 *   Results whose call fell out of the window are dropped, and calls without
 *   a result (a cancelled or interrupted run) get a synthetic one: providers
 *   refuse a tool call that is not answered.
 * - Tool-call arguments that are not a JSON object (cut by the token limit,
 *   or malformed) are replayed as `{}`: several servers reject the whole
 *   request over invalid JSON in an old call.
 * - `leaveOpen` names calls at the tail that are about to run (a resumed
 *   run, see run-loop.ts): they get no synthetic result; the caller appends
 *   the real one.
 */
export function messagesFromTranscript(
  entries: readonly TranscriptEntry[],
  leaveOpen: ReadonlySet<string> = new Set(),
): ChatCompletionMessageParam[] {
  const messages: ChatCompletionMessageParam[] = [];
  let assistant: ChatCompletionAssistantMessageParam | undefined;
  let assistantRun = "";
  const openCalls = new Set<string>();

  const closeAssistant = (): void => {
    if (!assistant) return;
    const calls = assistant.tool_calls ?? [];
    messages.push(assistant);
    assistant = undefined;
    for (const call of calls) {
      if (openCalls.has(call.id)) continue;
      openCalls.add(call.id);
    }
  };
  const answerOpenCalls = (skip: ReadonlySet<string> = new Set()): void => {
    for (const id of openCalls) {
      if (!skip.has(id)) messages.push({ role: "tool", tool_call_id: id, content: UNANSWERED_CALL });
    }
    openCalls.clear();
  };
  const assistantFor = (runId: string): ChatCompletionAssistantMessageParam => {
    if (assistant && assistantRun === runId) return assistant;
    closeAssistant();
    answerOpenCalls();
    assistant = { role: "assistant", content: "" };
    assistantRun = runId;
    return assistant;
  };

  for (const entry of entries) {
    const content = entry.content;
    switch (content.case) {
      case "userMessage":
        closeAssistant();
        answerOpenCalls();
        messages.push({ role: "user", content: content.value.text });
        break;
      case "assistantMessage": {
        const message = assistantFor(entry.runId);
        if ((message.tool_calls ?? []).length > 0) {
          // Text after tool calls starts the next model turn.
          closeAssistant();
          answerOpenCalls();
          assistantFor(entry.runId).content = content.value.text;
        } else {
          message.content = `${typeof message.content === "string" ? message.content : ""}${content.value.text}`;
        }
        break;
      }
      case "toolCall": {
        const message = assistantFor(entry.runId);
        const call: ChatCompletionMessageFunctionToolCall = {
          id: content.value.toolCallId,
          type: "function",
          function: { name: content.value.toolName, arguments: replayableArguments(content.value.argumentsJson) },
        };
        message.tool_calls = [...(message.tool_calls ?? []), call];
        break;
      }
      case "toolResult":
        closeAssistant();
        if (!openCalls.delete(content.value.toolCallId)) break;
        messages.push({ role: "tool", tool_call_id: content.value.toolCallId, content: content.value.output });
        break;
      case "notice":
        if (content.value.code === SPLICE_NOTICE_CODE && assistant && assistantRun === entry.runId) {
          closeAssistant();
          messages.push({ role: "user", content: CONTINUE_PROMPT });
        }
        break;
      case "reasoning":
      case undefined:
        break;
    }
  }
  closeAssistant();
  answerOpenCalls(leaveOpen);
  return messages.map(withoutEmptyContent);
}

/**
 * The tool calls run `runId` committed that have no result yet, in
 * transcript order. A run only goes on to its next model turn once every
 * call of a turn has a result, so these are the unrun calls of its last
 * turn: what a resumed run must run before asking the model again.
 */
export function unansweredCalls(entries: readonly TranscriptEntry[], runId: string): ToolCall[] {
  const open = new Map<string, ToolCall>();
  for (const entry of entries) {
    if (entry.runId !== runId) continue;
    const content = entry.content;
    if (content.case === "toolCall") open.set(content.value.toolCallId, content.value);
    else if (content.case === "toolResult") open.delete(content.value.toolCallId);
  }
  return [...open.values()];
}

/** Arguments as they may be sent back to the provider: a JSON object, else `{}`. */
export function replayableArguments(argumentsJson: string): string {
  try {
    const parsed: unknown = JSON.parse(argumentsJson);
    if (typeof parsed === "object" && parsed !== null && !Array.isArray(parsed)) return argumentsJson;
  } catch {
    // Not JSON: replaced below.
  }
  return "{}";
}

/** Told to the model for a call that never got a result. */
export const UNANSWERED_CALL = "This tool call did not complete (the run ended before it ran).";

/** An assistant message with tool calls and no text sends `content: null`, as OpenAI does. */
function withoutEmptyContent(message: ChatCompletionMessageParam): ChatCompletionMessageParam {
  if (message.role === "assistant" && message.content === "" && (message.tool_calls ?? []).length > 0) {
    return { ...message, content: null };
  }
  return message;
}
