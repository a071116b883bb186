import type { ChatCompletionChunk } from "openai/resources/chat/completions";
import type { CompletionUsage } from "openai/resources/completions";
import type { RunSink } from "../runtime/index.js";
import type { BlockIds } from "./block-ids.js";
import type { TextFilter } from "./continuation-filter.js";

/** Bounds on what one model turn may accumulate, in UTF-8 bytes. */
export interface TurnBounds {
  /** Answer text plus reasoning (including text said before a resume). */
  maxAnswerBytes: number;
  /** Arguments of all tool calls together. */
  maxToolArgumentsBytes: number;
}

/** A tool call assembled from its streamed pieces. */
export interface AssembledToolCall {
  id: string;
  name: string;
  argumentsJson: string;
  blockId: string;
}

/**
 * Folds one streamed response into text, reasoning, tool calls, finish reason
 * and usage, forwarding each delta to the sink as it arrives.
 *
 * Tool calls: OpenAI sends each call's id and name in its first piece, keyed
 * by `index`, and later pieces with argument fragments and the same index.
 * Some compatible servers repeat `index` (every call at 0) or omit it, so a
 * piece whose id differs from the call stored at its index starts a new
 * call, and a piece without an index starts a new call when it has a new id
 * and otherwise continues the last call.
 */
export class ChunkAccumulator {
  text = "";
  reasoning = "";
  finishReason: string | undefined;
  usage: CompletionUsage | undefined;
  readonly textBlock: string;
  readonly reasoningBlock: string;
  /** Set when the response outgrew a {@link TurnBounds} bound; says which. */
  overLimit: string | undefined;
  private answerBytes: number;
  private argumentsBytes = 0;
  /** Calls in arrival order. */
  private readonly calls: AssembledToolCall[] = [];
  /** The latest call seen at each index. */
  private readonly byIndex = new Map<number, AssembledToolCall>();

  constructor(
    private readonly sink: RunSink,
    private readonly blocks: BlockIds,
    private readonly filter: TextFilter,
    private readonly bounds: TurnBounds,
    /** Bytes of answer already said before this response (a resumed answer). */
    alreadySaidBytes = 0,
  ) {
    this.answerBytes = alreadySaidBytes;
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
      this.countAnswer(reasoning);
      this.reasoning += reasoning;
      this.sink.reasoningDelta(this.reasoningBlock, reasoning);
    }
    if (delta.content) {
      this.countAnswer(delta.content);
      this.emitText(this.filter.push(delta.content));
    }
    for (const piece of delta.tool_calls ?? []) {
      const call = this.callFor(piece.index as number | undefined | null, piece.id);
      if (piece.id) call.id = piece.id;
      if (piece.function?.name) call.name = piece.function.name;
      const argumentsDelta = piece.function?.arguments ?? "";
      this.argumentsBytes += Buffer.byteLength(argumentsDelta, "utf8");
      if (this.argumentsBytes > this.bounds.maxToolArgumentsBytes) {
        this.overLimit ??= `the model's tool-call arguments in one turn exceeded ${this.bounds.maxToolArgumentsBytes} bytes`;
      }
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
    return this.calls.map((call) => ({ ...call, id: call.id || `call_${call.blockId}` }));
  }

  /** The call a tool-call piece belongs to, started when the piece begins a new one. */
  private callFor(index: number | undefined | null, id: string | undefined): AssembledToolCall {
    const last = this.calls.at(-1);
    const known = typeof index === "number" ? this.byIndex.get(index) : last;
    const continues =
      known !== undefined &&
      (typeof index === "number" ? !id || !known.id || id === known.id : !id || id === known.id);
    if (continues) return known;
    const call: AssembledToolCall = { id: "", name: "", argumentsJson: "", blockId: this.blocks.next("tool") };
    this.calls.push(call);
    if (typeof index === "number") this.byIndex.set(index, call);
    return call;
  }

  private countAnswer(text: string): void {
    this.answerBytes += Buffer.byteLength(text, "utf8");
    if (this.answerBytes > this.bounds.maxAnswerBytes) {
      this.overLimit ??= `the model's answer and reasoning in one turn exceeded ${this.bounds.maxAnswerBytes} bytes`;
    }
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
