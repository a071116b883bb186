import type { ChatCompletionChunk } from "openai/resources/chat/completions";
import type { CompletionUsage } from "openai/resources/completions";
import type { RunSink } from "../runtime/execution-backend.js";
import type { BlockIds } from "./block-ids.js";
import type { TextFilter } from "./continuation-filter.js";

/** A tool call assembled from its streamed pieces. */
export interface AssembledToolCall {
  id: string;
  name: string;
  argumentsJson: string;
  blockId: string;
}

/**
 * Folds one streamed response into text, reasoning, tool calls, finish reason
 * and usage, forwarding each delta to the sink as it arrives. Tool calls are
 * keyed by their `index`: only the first piece of a call carries its id and
 * name, later pieces carry argument fragments.
 */
export class ChunkAccumulator {
  text = "";
  reasoning = "";
  finishReason: string | undefined;
  usage: CompletionUsage | undefined;
  readonly textBlock: string;
  readonly reasoningBlock: string;
  private readonly calls = new Map<number, AssembledToolCall>();

  constructor(
    private readonly sink: RunSink,
    private readonly blocks: BlockIds,
    private readonly filter: TextFilter,
  ) {
    this.textBlock = blocks.next("text");
    this.reasoningBlock = blocks.next("reasoning");
  }

  push(chunk: ChatCompletionChunk): void {
    if (chunk.usage) this.usage = chunk.usage;
    const choice = chunk.choices[0];
    if (!choice) return;
    const delta = choice.delta;
    const reasoning = reasoningOf(delta);
    if (reasoning) {
      this.reasoning += reasoning;
      this.sink.reasoningDelta(this.reasoningBlock, reasoning);
    }
    if (delta.content) this.emitText(this.filter.push(delta.content));
    for (const piece of delta.tool_calls ?? []) {
      let call = this.calls.get(piece.index);
      if (!call) {
        call = { id: "", name: "", argumentsJson: "", blockId: this.blocks.next("tool") };
        this.calls.set(piece.index, call);
      }
      if (piece.id) call.id = piece.id;
      if (piece.function?.name) call.name = piece.function.name;
      const argumentsDelta = piece.function?.arguments ?? "";
      call.argumentsJson += argumentsDelta;
      this.sink.toolCallDelta(call.blockId, {
        ...(piece.id ? { toolCallId: piece.id } : {}),
        ...(piece.function?.name ? { toolName: piece.function.name } : {}),
        ...(argumentsDelta ? { argumentsDelta } : {}),
      });
    }
    if (choice.finish_reason) this.finishReason = choice.finish_reason;
  }

  /** Ends the stream: releases (finished) or drops (interrupted) text the continuation filter still holds. */
  flush(ending: "finished" | "interrupted"): void {
    this.emitText(this.filter.flush(ending));
  }

  /**
   * The assembled tool calls in index order. Some compatible servers omit
   * call ids; those get a generated one so results can be matched.
   */
  toolCalls(): AssembledToolCall[] {
    return [...this.calls.entries()]
      .sort(([a], [b]) => a - b)
      .map(([index, call]) => ({ ...call, id: call.id || `call_${call.blockId}_${index}` }));
  }

  private emitText(text: string): void {
    if (!text) return;
    this.text += text;
    this.sink.textDelta(this.textBlock, text);
  }
}

/**
 * Reasoning text of a delta. It is not part of OpenAI's chat-completions
 * schema; compatible servers send it as `reasoning_content` (DeepSeek, vLLM,
 * llama.cpp) or `reasoning` (OpenRouter, Ollama, newer vLLM).
 */
function reasoningOf(delta: object): string | undefined {
  for (const field of ["reasoning_content", "reasoning"]) {
    const value: unknown = Reflect.get(delta, field);
    if (typeof value === "string" && value !== "") return value;
  }
  return undefined;
}
