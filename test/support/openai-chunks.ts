import type { FakeResponse } from "./fake-openai.js";

/**
 * Builds chat-completion chunk sequences shaped exactly like OpenAI's
 * streaming output: a first chunk carrying the role, content pieces, tool
 * calls whose first chunk holds index/id/name and whose later chunks carry
 * argument pieces, a final chunk with `finish_reason`, and (when usage is
 * requested) a last chunk with empty `choices` and the usage.
 */

/** A tool call the fake model makes. */
export interface ScriptedToolCall {
  id: string;
  name: string;
  arguments: string;
}

/** Provider usage numbers for the last chunk. */
export interface ScriptedUsage {
  prompt: number;
  completion: number;
  cached?: number;
  reasoning?: number;
}

/** What one scripted model reply contains. */
export interface ScriptedReply {
  reasoning?: string;
  /** Field name the server uses for reasoning (DeepSeek/vLLM vs OpenRouter/Ollama). */
  reasoningField?: "reasoning_content" | "reasoning";
  text?: string;
  toolCalls?: ScriptedToolCall[];
  finishReason?: "stop" | "tool_calls" | "length";
  usage?: ScriptedUsage;
  /** Characters per content/argument piece. */
  pieceSize?: number;
}

const base = { id: "chatcmpl-fake", object: "chat.completion.chunk", created: 1_700_000_000, model: "fake-model" };

/** One chat-completion chunk with a single choice, for tests that script deltas by hand. */
export function chunk(delta: object, finishReason: string | null = null): object {
  return { ...base, choices: [{ index: 0, delta, logprobs: null, finish_reason: finishReason }] };
}

/** Splits text into pieces of `size` characters. */
export function pieces(text: string, size: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < text.length; i += size) out.push(text.slice(i, i + size));
  return out;
}

/** The chunks of one reply. */
export function replyChunks(reply: ScriptedReply): object[] {
  const size = reply.pieceSize ?? 4;
  const chunks: object[] = [chunk({ role: "assistant", content: "", refusal: null })];
  const field = reply.reasoningField ?? "reasoning_content";
  for (const piece of pieces(reply.reasoning ?? "", size)) chunks.push(chunk({ [field]: piece }));
  for (const piece of pieces(reply.text ?? "", size)) chunks.push(chunk({ content: piece }));
  (reply.toolCalls ?? []).forEach((call, index) => {
    chunks.push(chunk({ tool_calls: [{ index, id: call.id, type: "function", function: { name: call.name, arguments: "" } }] }));
    for (const piece of pieces(call.arguments, size)) {
      chunks.push(chunk({ tool_calls: [{ index, function: { arguments: piece } }] }));
    }
  });
  const finish = reply.finishReason ?? (reply.toolCalls?.length ? "tool_calls" : "stop");
  chunks.push(chunk({}, finish));
  if (reply.usage) {
    chunks.push({
      ...base,
      choices: [],
      usage: {
        prompt_tokens: reply.usage.prompt,
        completion_tokens: reply.usage.completion,
        total_tokens: reply.usage.prompt + reply.usage.completion,
        prompt_tokens_details: { cached_tokens: reply.usage.cached ?? 0 },
        completion_tokens_details: { reasoning_tokens: reply.usage.reasoning ?? 0 },
      },
    });
  }
  return chunks;
}

/** A complete streamed reply. */
export function reply(
  script: ScriptedReply,
  extra: { delayMs?: number; waitBefore?: Readonly<Record<number, Promise<void>>> } = {},
): FakeResponse {
  return { kind: "stream", chunks: replyChunks(script), ...extra };
}

/** An OpenAI-style error response. */
export function errorReply(status: number, message: string, headers?: Record<string, string>): FakeResponse {
  return {
    kind: "error",
    status,
    body: { error: { message, type: "invalid_request_error", param: null, code: null } },
    ...(headers ? { headers } : {}),
  };
}

/** One SSE event carrying `payload` as JSON, framed as OpenAI frames it (for "raw" replies). */
export function sseEvent(payload: object): string {
  return `data: ${JSON.stringify(payload)}\n\n`;
}
