import type { ChatCompletionFunctionTool } from "openai/resources/chat/completions";
import { editFileTool, writeFileTool } from "./fs-write-tools.js";
import { listFilesTool, readFileTool, searchFilesTool } from "./fs-read-tools.js";
import { boundTextWithNotes } from "./output-bounds.js";
import { runCommandTool } from "./shell-tool.js";
import { ToolError, type ToolArgs, type ToolContext, type ToolDefinition, type ToolOutput } from "./tool.js";

/** Every builtin tool, in the order they are offered to the model. */
const BUILTIN_TOOLS: readonly ToolDefinition[] = [
  readFileTool,
  listFilesTool,
  searchFilesTool,
  writeFileTool,
  editFileTool,
  runCommandTool,
];

/** Names of the builtin tools (what profiles list in `tools`). */
export const BUILTIN_TOOL_NAMES: readonly string[] = BUILTIN_TOOLS.map((tool) => tool.name);

/** Capabilities that gate the builtin tools. */
export const TOOL_CAPABILITIES: readonly string[] = [...new Set(BUILTIN_TOOLS.map((tool) => tool.capability))];

/**
 * The tools one run may offer: those its profile lists whose capability the
 * worker was granted. A tool the worker lacks is simply not offered, so the
 * model is never tempted by something that would be refused.
 */
export function toolsForRun(profileTools: readonly string[], capabilities: readonly string[]): ToolDefinition[] {
  return BUILTIN_TOOLS.filter((tool) => profileTools.includes(tool.name) && capabilities.includes(tool.capability));
}

/** The tools in the chat-completions request format. */
export function toOpenAITools(tools: readonly ToolDefinition[]): ChatCompletionFunctionTool[] {
  return tools.map((tool) => ({
    type: "function",
    function: { name: tool.name, description: tool.description, parameters: tool.parameters },
  }));
}

/**
 * Runs one tool call the model made and returns what the model will see,
 * bounded. Refusals and tool failures become error results the model can
 * read; only cancellation propagates (as the signal's reason).
 */
export async function executeToolCall(
  name: string,
  argumentsJson: string,
  offered: readonly ToolDefinition[],
  context: ToolContext,
): Promise<ToolOutput> {
  const tool = offered.find((candidate) => candidate.name === name);
  let result: ToolOutput;
  try {
    if (!tool) throw new ToolError(unavailableTool(name, offered));
    result = await tool.run(parseArgs(argumentsJson), context);
  } catch (error) {
    if (context.signal.aborted) throw context.signal.reason;
    result = { output: describeFailure(error, context), isError: true };
  }
  const bounded = boundTextWithNotes(result.output, result.notes ?? [], context.limits.maxOutputBytes, "tool output");
  return {
    output: bounded.text,
    isError: result.isError ?? false,
    truncated: (result.truncated ?? false) || bounded.truncated,
  };
}

/**
 * Told to a model that called a tool it was not offered, naming those it
 * may call, so it can correct itself instead of guessing again.
 */
function unavailableTool(name: string, offered: readonly ToolDefinition[]): string {
  const choices = offered.length > 0 ? `the tools it may call are: ${offered.map((tool) => tool.name).join(", ")}` : "it may call no tools";
  return `tool "${name}" is not available to this worker; ${choices}`;
}

function parseArgs(json: string): ToolArgs {
  let parsed: unknown;
  try {
    parsed = JSON.parse(json === "" ? "{}" : json);
  } catch {
    throw new ToolError("the arguments are not valid JSON");
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new ToolError("the arguments must be a JSON object");
  }
  return parsed as ToolArgs;
}

/** Error text for the model, with the host location of the workspace hidden. */
function describeFailure(error: unknown, context: ToolContext): string {
  if (error instanceof ToolError) return error.message;
  const message = error instanceof Error ? error.message : String(error);
  return `tool failed: ${context.workspace ? context.workspace.redact(message) : message}`;
}
