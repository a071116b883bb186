import type { ChatCompletionMessageParam } from "openai/resources/chat/completions";
import { create } from "@bufbuild/protobuf";
import { ToolResultSchema } from "../../gen/worker_runtime/v1/transcript_pb.js";
import { bounded, MAX_LOGGED_PAYLOAD_CHARS } from "../runtime/index.js";
import type { AssembledToolCall } from "./chunk-accumulator.js";
import { traceTool } from "./genai-spans.js";
import type { RunContext } from "./run-context.js";
import { executeToolCall } from "./tools/tool-registry.js";
import { workspaceRoots } from "./workspace-roots.js";
import type { ToolOutput } from "./tools/tool.js";
import { rejectedCallOutput } from "./rejected-call.js";

/** Told to the model (and kept in the transcript) for a call cut short by cancel. */
const CANCELLED_CALL = "The run was cancelled before this tool call finished.";

/**
 * Runs a turn's tool calls one after another, committing each result and
 * appending it to `messages` for the next turn. Calls the profile marks as
 * needing approval wait for a client's decision first; a rejection is told
 * to the model as the call's result, with the client's reason. Returns
 * "cancelled" as soon as the run's signal aborts, while waiting for approval
 * or while a tool runs (the tool is killed through the same signal).
 */
export async function runToolCalls(
  context: RunContext,
  calls: readonly AssembledToolCall[],
  messages: ChatCompletionMessageParam[],
): Promise<"done" | "cancelled"> {
  for (const call of calls) {
    if (context.signal.aborted) return "cancelled";
    let output: ToolOutput;
    try {
      output = (await approvalRefusal(context, call)) ?? (await traceTool(context, call, () => execute(context, call)));
    } catch (error) {
      if (!context.signal.aborted) throw error;
      await commitResult(context, call, { output: CANCELLED_CALL, isError: true });
      return "cancelled";
    }
    await commitResult(context, call, output);
    messages.push({ role: "tool", tool_call_id: call.id, content: output.output });
  }
  return "done";
}

/**
 * Asks for approval when the profile requires it, or when a resumed run was
 * decided on this call (a rejection holds even if the profile changed
 * meanwhile); returns the refusal to report, if any.
 */
async function approvalRefusal(context: RunContext, call: AssembledToolCall): Promise<ToolOutput | undefined> {
  const offered = context.tools.some((tool) => tool.name === call.name);
  const decided = context.request.resume?.toolCallId === call.id;
  if (!offered || !(decided || context.profile.approvalRequiredTools.includes(call.name))) return undefined;
  const decision = await context.sink.requestApproval(
    { toolCallId: call.id, toolName: call.name, argumentsJson: call.argumentsJson },
    context.signal,
  );
  if (decision.approved) return undefined;
  return { output: rejectedCallOutput(decision.reason), isError: true };
}

function execute(context: RunContext, call: AssembledToolCall): Promise<ToolOutput> {
  return executeToolCall(call.name, call.argumentsJson, context.tools, {
    workspace: context.workspace,
    limits: context.settings.toolLimits,
    signal: context.signal,
    shellSandbox: context.settings.shellSandbox,
    // Every workspace root too, whatever the operator listed: the workspaces under them belong to other workers.
    shellHiddenPaths: [...context.settings.shellHiddenPaths, ...workspaceRoots(context.request)],
    hostLookups: context.settings.hostLookups,
    ...(context.request.policy?.shell ? { shellPolicy: context.request.policy.shell } : {}),
  });
}

async function commitResult(context: RunContext, call: AssembledToolCall, output: ToolOutput): Promise<void> {
  // `arguments` and `output` are payload fields: the CLI's logger redacts them unless payload logging is on.
  context.logger.debug?.("tool call ended", {
    tool: call.name,
    tool_call_id: call.id,
    is_error: output.isError ?? false,
    arguments: bounded(call.argumentsJson, MAX_LOGGED_PAYLOAD_CHARS),
    output: bounded(output.output, MAX_LOGGED_PAYLOAD_CHARS),
  });
  await context.sink.commit({
    case: "toolResult",
    value: create(ToolResultSchema, {
      toolCallId: call.id,
      toolName: call.name,
      output: output.output,
      isError: output.isError ?? false,
      truncated: output.truncated ?? false,
    }),
  });
}
