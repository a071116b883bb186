/**
 * What the fields of one streamed delta hold, read the same way whatever
 * dialect of "OpenAI-compatible" the server speaks. The SDK's types say
 * what OpenAI sends; compatible servers send more shapes, and a field of an
 * unexpected type used to reach `Buffer.byteLength` and throw, failing the
 * run INTERNAL. Nothing here throws: a field that holds nothing readable is
 * empty.
 */

/** The text a delta adds: the model's reasoning and its answer. */
export interface DeltaText {
  reasoning: string;
  answer: string;
}

/**
 * The reasoning and answer text of a delta.
 *
 * - Reasoning is not in OpenAI's chat-completions schema; servers send it
 *   as `reasoning_content` (DeepSeek, vLLM, llama.cpp) or `reasoning`
 *   (OpenRouter, Ollama, newer vLLM), some both with the same text, so the
 *   first non-empty one is taken.
 * - `content` is a string, or (Mistral's reasoning models) a list of parts:
 *   `{type: "text", text}` is answer text, `{type: "thinking", thinking:
 *   [{type: "text", text}]}` reasoning; other parts (references) are not text.
 * - `refusal` (OpenAI: the model declined, and `content` stays null) is
 *   answer text, so it is streamed, committed as the assistant's message
 *   and replayed as its content. It used to be dropped: the run completed
 *   with no answer at all, and the user never saw why.
 */
export function deltaText(delta: object): DeltaText {
  let reasoning = reasoningField(delta);
  let answer = "";
  const content: unknown = Reflect.get(delta, "content");
  if (typeof content === "string") answer = content;
  else if (Array.isArray(content)) {
    for (const part of content) {
      if (!isObject(part)) continue;
      if (part["type"] === "text") answer += stringOf(part["text"]) ?? "";
      else if (part["type"] === "thinking") reasoning += thinkingText(part["thinking"]);
    }
  }
  // OpenAI streams a refusal in its own field, with no content: it is the model's answer to the user.
  answer += stringOf(Reflect.get(delta, "refusal")) ?? "";
  return { reasoning, answer };
}

/** One piece of a streamed tool call, its fields of the expected types or absent. */
export interface ToolCallPiece {
  index: number | undefined;
  id: string | undefined;
  name: string | undefined;
  /** The arguments text this piece adds ("" for none). */
  argumentsDelta: string;
}

/**
 * The tool-call pieces of a delta. `arguments` is a string of JSON text;
 * a server that sends the arguments as a JSON object (some local servers
 * and proxies) has it serialized, so the call still runs.
 */
export function toolCallPieces(delta: object): ToolCallPiece[] {
  const calls: unknown = Reflect.get(delta, "tool_calls");
  if (!Array.isArray(calls)) return [];
  const pieces: ToolCallPiece[] = [];
  for (const call of calls) {
    if (!isObject(call)) continue;
    const fn = isObject(call["function"]) ? call["function"] : {};
    const index = call["index"];
    pieces.push({
      index: typeof index === "number" && Number.isInteger(index) ? index : undefined,
      id: stringOf(call["id"]) || undefined,
      name: stringOf(fn["name"]) || undefined,
      argumentsDelta: argumentsText(fn["arguments"]),
    });
  }
  return pieces;
}

function reasoningField(delta: object): string {
  for (const field of ["reasoning_content", "reasoning"]) {
    const value: unknown = Reflect.get(delta, field);
    if (typeof value === "string" && value !== "") return value;
  }
  return "";
}

/** A Mistral thinking part's text: a list of text parts, or (leniently) a string. */
function thinkingText(thinking: unknown): string {
  if (typeof thinking === "string") return thinking;
  if (!Array.isArray(thinking)) return "";
  let text = "";
  for (const part of thinking) {
    if (isObject(part) && part["type"] === "text") text += stringOf(part["text"]) ?? "";
  }
  return text;
}

function argumentsText(value: unknown): string {
  if (typeof value === "string") return value;
  if (value === undefined || value === null) return "";
  return JSON.stringify(value) ?? "";
}

function stringOf(value: unknown): string | undefined {
  return typeof value === "string" ? value : undefined;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
