import type { ChatCompletionChunk } from "openai/resources/chat/completions";
import type { CompletionUsage } from "openai/resources/completions";
import type { BlockIds } from "./block-ids.js";
import type { TextFilter } from "./continuation-filter.js";
import type { DeltaSink } from "./delta-coalescer.js";
import { deltaText, toolCallPieces } from "./delta-fields.js";
import { utf8Prefix } from "./utf8-prefix.js";
import { MAX_KEPT_TOOL_CALL_ID_LENGTH } from "../runtime/index.js";

/** Bounds on what one model turn may accumulate, in UTF-8 bytes. */
export interface TurnBounds {
  /** Answer text plus reasoning (including text said before a resume). */
  maxAnswerBytes: number;
  /** Arguments of all tool calls together. */
  maxToolArgumentsBytes: number;
  /** Tool calls (empty arguments cost no bytes, so the count has its own bound). */
  maxToolCalls: number;
}

/** A tool call assembled from its streamed pieces. */
export interface AssembledToolCall {
  id: string;
  name: string;
  argumentsJson: string;
  blockId: string;
}

/** A call being assembled, with the `index` the provider gave it (undefined when it gave none). */
interface PendingCall extends AssembledToolCall {
  index: number | undefined;
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
 *
 * A provider may interleave parallel calls (index 1's first piece before
 * index 0's); the calls are still returned, committed, run and replayed in
 * index order, as the model numbered them.
 *
 * The answer cap is exact: the piece that crosses `maxAnswerBytes` is cut at
 * the cap (between characters) before it reaches the sink, so no watcher and
 * no transcript entry ever holds a byte past it.
 */
export class ChunkAccumulator {
  text = "";
  reasoning = "";
  finishReason: string | undefined;
  usage: CompletionUsage | undefined;
  /** The model that answered, as the response names it (for the trace). */
  model: string | undefined;
  readonly textBlock: string;
  readonly reasoningBlock: string;
  /** Set when the response outgrew a {@link TurnBounds} bound; says which. */
  overLimit: string | undefined;
  private answerBytes: number;
  private readonly alreadySaidBytes: number;
  private argumentsBytes = 0;
  /** Calls in arrival order. */
  private readonly calls: PendingCall[] = [];
  /** The latest call seen at each index. */
  private readonly byIndex = new Map<number, PendingCall>();

  constructor(
    private readonly sink: DeltaSink,
    private readonly blocks: BlockIds,
    private readonly filter: TextFilter,
    private readonly bounds: TurnBounds,
    /** Bytes of answer already said before this response (a resumed answer). */
    alreadySaidBytes = 0,
  ) {
    this.answerBytes = alreadySaidBytes;
    this.alreadySaidBytes = alreadySaidBytes;
    this.textBlock = blocks.next("text");
    this.reasoningBlock = blocks.next("reasoning");
  }

  push(chunk: ChatCompletionChunk): void {
    if (chunk.usage) this.usage = chunk.usage;
    if (this.model === undefined && chunk.model) this.model = chunk.model;
    // Compatible servers omit `choices` on a usage-only chunk, and `delta` on one that only finishes.
    const choices: unknown = chunk.choices;
    if (!Array.isArray(choices)) return;
    // The request asks for one choice; a chunk of several is followed by choice 0's (some servers omit its index).
    const choice: ChatCompletionChunk.Choice | undefined =
      choices.length === 1 ? choices[0] : choices.find((candidate) => !candidate?.index);
    if (!choice) return;
    const delta: unknown = choice.delta;
    if (delta && typeof delta === "object") this.pushDelta(delta);
    // Past the cap nothing more is taken from this response.
    if (this.overLimit) return;
    if (choice.finish_reason) this.finishReason = choice.finish_reason;
  }

  /** Bytes of answer, reasoning and tool-call arguments this response streamed (for usage estimates). */
  get receivedBytes(): number {
    return this.answerBytes - this.alreadySaidBytes + this.argumentsBytes;
  }

  /** Ends the stream: releases (finished) or drops (interrupted) text the continuation filter still holds. */
  flush(ending: "finished" | "interrupted"): void {
    this.emitText(this.filter.flush(ending));
  }

  private pushDelta(delta: object): void {
    const said = deltaText(delta);
    const reasoning = this.admitAnswer(said.reasoning);
    if (reasoning) {
      this.reasoning += reasoning;
      this.sink.reasoningDelta(this.reasoningBlock, reasoning);
    }
    const content = this.admitAnswer(said.answer);
    if (content) this.emitText(this.filter.push(content));
    // Past the cap nothing more is taken from this response.
    if (this.overLimit) return;
    for (const piece of toolCallPieces(delta)) {
      const call = this.callFor(piece.index, piece.id);
      if (this.calls.length > this.bounds.maxToolCalls) {
        this.overLimit ??= `the model made more than ${this.bounds.maxToolCalls} tool calls in one turn`;
        return;
      }
      if (piece.id) call.id = piece.id;
      if (piece.name) call.name = piece.name;
      const argumentsDelta = piece.argumentsDelta;
      this.argumentsBytes += Buffer.byteLength(argumentsDelta, "utf8");
      if (this.argumentsBytes > this.bounds.maxToolArgumentsBytes) {
        this.overLimit ??= `the model's tool-call arguments in one turn exceeded ${this.bounds.maxToolArgumentsBytes} bytes`;
      }
      call.argumentsJson += argumentsDelta;
      this.sink.toolCallDelta(call.blockId, {
        ...(piece.id ? { toolCallId: piece.id } : {}),
        ...(piece.name ? { toolName: piece.name } : {}),
        ...(argumentsDelta ? { argumentsDelta } : {}),
      });
    }
  }

  /**
   * The assembled tool calls in index order (calls sharing an index, or
   * sent without one, keep their arrival order among themselves). A call
   * gets a generated id when the provider sent none, or one that an earlier
   * call of this response or an id in `taken` (the run's earlier calls)
   * already has: some compatible servers omit ids or number calls per
   * response, and a repeated id would let one approval, result or history
   * message answer two calls. So does an id a client could not send back in
   * ResolveApproval ({@link clientSafeId}): the run would wait for an
   * approval nobody can give.
   */
  toolCalls(taken: ReadonlySet<string> = new Set()): AssembledToolCall[] {
    const ordered = this.calls.every((call) => call.index !== undefined)
      ? [...this.calls].sort((a, b) => (a.index as number) - (b.index as number))
      : this.calls;
    const used = new Set(taken);
    return ordered.map(({ index: _index, ...call }) => {
      let id = clientSafeId(call.id) && !used.has(call.id) ? call.id : `call_${call.blockId}`;
      // A resumed run numbers its blocks afresh, so even a generated id may be taken.
      for (let n = 2; used.has(id); n++) id = `call_${call.blockId}_${n}`;
      used.add(id);
      return { ...call, id };
    });
  }

  /** The call a tool-call piece belongs to, started when the piece begins a new one. */
  private callFor(index: number | undefined, id: string | undefined): PendingCall {
    const last = this.calls.at(-1);
    const known = typeof index === "number" ? this.byIndex.get(index) : last;
    const continues = known !== undefined && (typeof index === "number" ? !id || !known.id || id === known.id : !id || id === known.id);
    if (continues) return known;
    const call: PendingCall = {
      id: "",
      name: "",
      argumentsJson: "",
      blockId: this.blocks.next("tool"),
      index: typeof index === "number" ? index : undefined,
    };
    this.calls.push(call);
    if (typeof index === "number") this.byIndex.set(index, call);
    return call;
  }

  /**
   * The part of `text` that still fits under the answer cap. The piece that
   * crosses it is cut at the cap on a character boundary and marks the turn
   * over its limit; after that nothing more is admitted.
   */
  private admitAnswer(text: string): string {
    if (text === "" || this.overLimit) return "";
    const bytes = Buffer.byteLength(text, "utf8");
    const room = this.bounds.maxAnswerBytes - this.answerBytes;
    if (bytes <= room) {
      this.answerBytes += bytes;
      return text;
    }
    this.overLimit = `the model's answer and reasoning in one turn exceeded ${this.bounds.maxAnswerBytes} bytes`;
    const fitted = utf8Prefix(text, Math.max(0, room));
    this.answerBytes += Buffer.byteLength(fitted, "utf8");
    return fitted;
  }

  private emitText(text: string): void {
    if (!text) return;
    this.text += text;
    this.sink.textDelta(this.textBlock, text);
  }
}

/**
 * The provider ids kept as they are: 1-64 printable ASCII characters, as
 * every known provider's are (OpenAI's `call_` ids are about 30). Anything
 * else (control characters, lone surrogates, hundreds of characters) would
 * be refused by ResolveApproval's tool_call_id rule (at most
 * RuntimeLimits.maxToolCallIdLength, 256 by default, never below
 * MAX_KEPT_TOOL_CALL_ID_LENGTH), and the id only has to
 * be the same in the run's messages, so a generated one serves as well.
 */
function clientSafeId(id: string): boolean {
  return id.length <= MAX_KEPT_TOOL_CALL_ID_LENGTH && /^[\x21-\x7e]+$/.test(id);
}
