import type { ChatCompletionMessageParam } from "openai/resources/chat/completions";
import { boundText } from "./tools/output-bounds.js";

/**
 * Bounds the history sent to the model by size, not just by entry count: a
 * few large tool results or write_file calls would otherwise be replayed in
 * every request for the rest of the worker's life.
 *
 * - Any single message's text, and any tool call's arguments, larger than an
 *   eighth of the budget is cut, saying so in the replayed text (arguments,
 *   which must stay a JSON object, are replaced by a note object). The
 *   transcript keeps everything.
 * - Then the oldest messages are dropped until the rest fits, starting the
 *   history at a user message so no tool result is left without its call.
 *   The newest user message (the run's input) is always kept.
 * - When the history holds the run's own input (`inputIncluded`: a resumed
 *   run, or a fresh one whose input was read with it), that newest user
 *   message is sent whole, as a fresh run's input is: it is what the run
 *   is about, and the input limit already bounds it.
 */
export function boundHistory(
  messages: readonly ChatCompletionMessageParam[],
  maxBytes: number,
  inputIncluded = false,
): ChatCompletionMessageParam[] {
  const itemMax = Math.max(1024, Math.floor(maxBytes / 8));
  const input = inputIncluded ? messages.findLastIndex((message) => message.role === "user") : -1;
  const shrunk = messages.map((message, index) => (index === input ? message : shrinkMessage(message, itemMax)));
  const sizes = shrunk.map((message) => Buffer.byteLength(JSON.stringify(message), "utf8"));
  let total = sizes.reduce((sum, size) => sum + size, 0);
  let start = 0;
  while (total > maxBytes && start < shrunk.length) total -= sizes[start++] as number;
  if (start === 0) return shrunk;
  const lastUser = shrunk.findLastIndex((message) => message.role === "user");
  const nextUser = shrunk.findIndex((message, index) => index >= start && message.role === "user");
  if (nextUser >= 0) start = nextUser;
  else if (lastUser >= 0) start = lastUser;
  else while (start < shrunk.length && shrunk[start]?.role === "tool") start++;
  return shrunk.slice(start);
}

function shrinkMessage(message: ChatCompletionMessageParam, itemMax: number): ChatCompletionMessageParam {
  let out = message;
  if (typeof message.content === "string" && Buffer.byteLength(message.content, "utf8") > itemMax) {
    out = {
      ...message,
      content: boundText(message.content, itemMax, "this message in the replayed history").text,
    } as ChatCompletionMessageParam;
  }
  const tooLong = (call: { type: string; function?: { arguments: string } }): boolean =>
    call.type === "function" && Buffer.byteLength(call.function?.arguments ?? "", "utf8") > itemMax;
  if (out.role === "assistant" && out.tool_calls?.some(tooLong)) {
    out = {
      ...out,
      tool_calls: out.tool_calls.map((call) => {
        if (call.type !== "function" || !tooLong(call)) return call;
        const bytes = Buffer.byteLength(call.function.arguments, "utf8");
        const note = `the ${bytes}-byte arguments of this call were left out of the replayed history`;
        return { ...call, function: { ...call.function, arguments: JSON.stringify({ omitted_from_history: note }) } };
      }),
    };
  }
  return out;
}
