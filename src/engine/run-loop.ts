import type { ChatCompletionMessageParam } from "openai/resources/chat/completions";
import { create } from "@bufbuild/protobuf";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { StopReason } from "../../gen/worker_runtime/v1/run_pb.js";
import { NoticeSchema, ToolResultSchema } from "../../gen/worker_runtime/v1/transcript_pb.js";
import type { RunOutcome } from "../runtime/index.js";
import type { AssembledToolCall } from "./chunk-accumulator.js";
import { messagesFromTranscript, replayableArguments, unansweredCalls } from "./conversation.js";
import { traceChat } from "./genai-spans.js";
import { boundHistory } from "./history-bounds.js";
import { runModelTurn, type TurnResult } from "./model-turn.js";
import type { RunContext } from "./run-context.js";
import { runToolCalls } from "./tool-runner.js";

/** What the loop does after a model turn, decided in one place ({@link nextStep}). */
type NextStep =
  /** `warning`: the provider broke the protocol in a way the answer survives; logged, the run completes. */
  | { kind: "finish"; stopReason: StopReason; warning?: string }
  /** The provider's answer breaks the protocol and holds nothing to keep: the run fails. */
  | { kind: "fail"; failure: Extract<RunOutcome, { kind: "failed" }> }
  | { kind: "run_tools"; calls: AssembledToolCall[] }
  /** Stop without running the calls: the reply was cut by max tokens or a content filter, or the run is out of turns. */
  | { kind: "stop_unrun"; stopReason: StopReason; calls: AssembledToolCall[]; why: string };

/**
 * Executes one run: history from the committed transcript, then model turns
 * and tool calls until the model stops or `max_turns` is reached.
 *
 * Reaching `max_turns` completes the run with STOP_REASON_MAX_TURNS rather
 * than failing it: everything produced is valid and committed, and the user
 * can simply send another input to go on. The unrun calls of the last turn
 * get results saying why, so the transcript stays a valid conversation.
 *
 * A resumed run (`request.resume`: it waited for an approval across a
 * restart) continues from the transcript: the calls of its last turn that
 * have no result run first, asking for approval as usual, then the model
 * loop goes on from the run's next turn.
 */
export async function executeRun(context: RunContext): Promise<RunOutcome> {
  const { messages, unrun } = await initialMessages(context);
  if (unrun.length > 0) {
    if ((await runToolCalls(context, unrun, messages)) === "cancelled") return { kind: "cancelled" };
    if (context.signal.aborted) return { kind: "cancelled" };
  }
  for (let turn = context.request.run.turns + 1; ; turn++) {
    const result: TurnResult = await traceChat(context, (inTurn) => runModelTurn(inTurn, messages));
    if (result.kind === "cancelled") return { kind: "cancelled" };
    if (result.kind === "failed") return result;
    messages.push(assistantMessage(result));
    const step = nextStep(result, turn, context.profile.maxTurns);
    switch (step.kind) {
      case "finish":
        if (step.warning) context.logger.warn(step.warning, { finish_reason: result.finishReason });
        return { kind: "completed", stopReason: step.stopReason };
      case "fail":
        return step.failure;
      case "stop_unrun":
        await commitUnrun(context, step.calls, step.why);
        return { kind: "completed", stopReason: step.stopReason };
      case "run_tools":
        if ((await runToolCalls(context, step.calls, messages)) === "cancelled") return { kind: "cancelled" };
        if (context.signal.aborted) return { kind: "cancelled" };
        break;
    }
  }
}

function nextStep(result: Extract<TurnResult, { kind: "answered" }>, turn: number, maxTurns: number): NextStep {
  const calls = result.toolCalls;
  if (result.finishReason === "content_filter") {
    // The reply was cut by the provider, its calls perhaps mid-arguments: say so rather than end as if it were whole.
    return { kind: "stop_unrun", stopReason: StopReason.END_TURN, calls, why: "the provider's content filter stopped the reply" };
  }
  if (calls.length === 0 && result.finishReason === "tool_calls") return noCallsStep(result.text);
  if (calls.length === 0) {
    return { kind: "finish", stopReason: result.finishReason === "length" ? StopReason.MAX_TOKENS : StopReason.END_TURN };
  }
  if (result.finishReason === "length") {
    return { kind: "stop_unrun", stopReason: StopReason.MAX_TOKENS, calls, why: "the reply hit the output token limit" };
  }
  if (turn >= maxTurns) {
    return { kind: "stop_unrun", stopReason: StopReason.MAX_TURNS, calls, why: `the run reached its limit of ${maxTurns} turns` };
  }
  return { kind: "run_tools", calls };
}

/**
 * A `tool_calls` finish that brought no tool call (some compatible servers
 * send it after a reply they meant as an answer). With text, that text is
 * the answer, as after `stop`, and a warning is logged; with no text (nothing,
 * or only reasoning) there is no answer to keep, and completing the run would
 * pass an empty reply off as the model's: the run fails PROVIDER_UNAVAILABLE,
 * as for any other malformed provider output (an event that is not a chunk),
 * and like it is not asked again: the server said its answer was whole.
 */
function noCallsStep(text: string): NextStep {
  if (text !== "") {
    return {
      kind: "finish",
      stopReason: StopReason.END_TURN,
      warning: "the provider finished with tool_calls but sent no tool call; its text is the answer",
    };
  }
  const message = 'the provider ended its answer with finish reason "tool_calls" but sent no tool call and no text';
  return {
    kind: "fail",
    failure: { kind: "failed", reason: ErrorReason.PROVIDER_UNAVAILABLE, message, metadata: { finish_reason: "tool_calls" } },
  };
}

/**
 * System prompt, history bounded by entries and bytes, and the run's input. The input is added
 * unless the history read holds it: a resumed run's always does, and a fresh run's is read up to
 * its input (`inputSeq`) when the Runtime says where that is.
 * A resumed run's calls without a result are returned to run, left open in the history.
 */
async function initialMessages(context: RunContext): Promise<{ messages: ChatCompletionMessageParam[]; unrun: AssembledToolCall[] }> {
  const { request, profile } = context;
  // The history before the input: reading it does not wait for the input's write (RunRequest.inputSeq).
  const entries = await request.readTranscript(request.inputSeq, context.settings.historyLimit);
  const unrun: AssembledToolCall[] = request.resume
    ? unansweredCalls(entries, request.run.runId).map((call) => ({
        id: call.toolCallId,
        name: call.toolName,
        argumentsJson: call.argumentsJson,
        blockId: "",
      }))
    : [];
  for (const entry of entries) {
    if (entry.runId === request.run.runId && entry.content.case === "toolCall") context.toolCallIds.add(entry.content.value.toolCallId);
  }
  const messages: ChatCompletionMessageParam[] = [];
  if (profile.systemPrompt) messages.push({ role: "system", content: profile.systemPrompt });
  const history = messagesFromTranscript(entries, new Set(unrun.map((call) => call.id)));
  const inputCommitted = entries.some((entry) => entry.runId === request.run.runId && entry.content.case === "userMessage");
  messages.push(...boundHistory(history, context.settings.historyMaxBytes, inputCommitted));
  if (!inputCommitted && !request.resume) messages.push({ role: "user", content: request.run.input?.text ?? "" });
  return { messages, unrun };
}

function assistantMessage(result: Extract<TurnResult, { kind: "answered" }>): ChatCompletionMessageParam {
  if (result.toolCalls.length === 0) return { role: "assistant", content: result.text };
  return {
    role: "assistant",
    content: result.text === "" ? null : result.text,
    tool_calls: result.toolCalls.map((call) => ({
      id: call.id,
      type: "function",
      function: { name: call.name, arguments: replayableArguments(call.argumentsJson) },
    })),
  };
}

async function commitUnrun(context: RunContext, calls: readonly AssembledToolCall[], why: string): Promise<void> {
  for (const call of calls) {
    await context.sink.commit({
      case: "toolResult",
      value: create(ToolResultSchema, {
        toolCallId: call.id,
        toolName: call.name,
        output: `Not run: ${why}.`,
        isError: true,
      }),
    });
  }
  await context.sink.commit({
    case: "notice",
    value: create(NoticeSchema, { code: "run.stopped", message: `The run stopped: ${why}.` }),
  });
}
