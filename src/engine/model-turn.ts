import { APIError } from "openai";
import type { ChatCompletionMessageParam } from "openai/resources/chat/completions";
import { create } from "@bufbuild/protobuf";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { bounded, MAX_LOGGED_PAYLOAD_CHARS } from "../runtime/index.js";
import { AssistantMessageSchema, ReasoningSchema, ToolCallSchema } from "../../gen/worker_runtime/v1/transcript_pb.js";
import { ChunkAccumulator, type AssembledToolCall } from "./chunk-accumulator.js";
import { continuationFilter, passThrough } from "./continuation-filter.js";
import { DeltaCoalescer } from "./delta-coalescer.js";
import { EventLoopSlices, SLICE_MAX_CHUNKS, SLICE_MAX_MS, TURN_MAX_MS } from "./event-loop-slices.js";
import { recordChatResponse } from "./genai-spans.js";
import { classifyProviderError, exhaustedFailure, isStreamCut, type ProviderFailure } from "./provider-errors.js";
import { ProviderCallTimer } from "./provider-call-timer.js";
import { backOff, openStream, type OpenedStream } from "./provider-stream.js";
import type { RunContext } from "./run-context.js";
import { MalformedChunkError, parseChunk, SseEventTooLargeError } from "./sse-events.js";
import { CONTINUE_PROMPT, spliceNotice } from "./splice.js";

/** What one model turn produced. */
export type TurnResult =
  | { kind: "answered"; text: string; toolCalls: AssembledToolCall[]; finishReason: string }
  | { kind: "cancelled" }
  | { kind: "failed"; reason: ErrorReason; message: string; metadata?: Record<string, string> };

export { CONTINUE_PROMPT } from "./splice.js";

/**
 * One model turn: a streamed response, committed as reasoning, text and tool
 * calls.
 *
 * A stream cut mid-answer (connection lost, idle timeout, stream ended
 * without a finish reason or `[DONE]`) keeps its text: the partial reasoning and text
 * are committed as they are (except reasoning cut before any answer text:
 * the request is simply asked again, so it is discarded), then the turn asks again with that text as the
 * assistant's message so far plus {@link CONTINUE_PROMPT}, and streams the
 * rest into a new block, committed as the next assistant entry. The
 * transcript thus holds the answer as consecutive pieces with no text
 * repeated (a {@link continuationFilter} drops a restarted answer's repeat),
 * with a splice notice between them that says what was asked, so a reader
 * and later turns' history see the continuation for what it is. Partial
 * tool calls of a cut stream are dropped; the continued answer makes them
 * again. This happens at most `maxStreamResumes` times per turn.
 *
 * A cut response rarely brings its usage (providers send it last), yet its
 * tokens were spent: they are estimated from what was sent and received,
 * and the request is counted as unreported (Usage.unreported_requests).
 */
export async function runModelTurn(context: RunContext, messages: ChatCompletionMessageParam[]): Promise<TurnResult> {
  let alreadySaid = "";
  for (let resumes = 0; ; resumes++) {
    const request: ChatCompletionMessageParam[] =
      alreadySaid === ""
        ? messages
        : [...messages, { role: "assistant", content: alreadySaid }, { role: "user", content: CONTINUE_PROMPT }];
    const timer = new ProviderCallTimer(context.metrics, context.profile.model);
    const opened = await openStream(context, request);
    if (opened.kind !== "opened") {
      timer.end(opened.kind === "cancelled" ? "cancelled" : opened, undefined);
      return opened;
    }
    context.sink.turn();
    const filter = alreadySaid === "" ? passThrough : continuationFilter(alreadySaid);
    const { maxAnswerBytes, maxToolArgumentsBytes, maxToolCallsPerTurn } = context.settings;
    const deltas = new DeltaCoalescer(context.sink);
    const accumulator = new ChunkAccumulator(
      deltas,
      context.blocks,
      filter,
      { maxAnswerBytes, maxToolArgumentsBytes, maxToolCalls: maxToolCallsPerTurn },
      Buffer.byteLength(alreadySaid, "utf8"),
    );
    const consumed = await consume(context, opened, accumulator, deltas, timer).finally(() => opened.release());
    timer.end(typeof consumed === "object" && consumed.kind === "retryable" ? "cut" : consumed, accumulator.usage);
    // An error the provider sent in the stream that is worth retrying is a cut, continued after a back-off.
    const streamError = typeof consumed === "object" && consumed.kind === "retryable" ? consumed : undefined;
    const ending = typeof consumed === "string" ? consumed : streamError ? "cut" : "failed";
    recordChatResponse(context.trace, accumulator);
    accumulator.flush(ending === "finished" ? "finished" : "interrupted");
    deltas.flush(true);
    if (accumulator.usage) addUsage(context, accumulator);
    else addUnreportedUsage(context, request, accumulator, ending === "finished");
    if (ending === "finished") {
      await commitText(context, accumulator);
      const toolCalls = accumulator.toolCalls(context.toolCallIds);
      for (const call of toolCalls) {
        context.toolCallIds.add(call.id);
        await context.sink.commit(
          {
            case: "toolCall",
            value: create(ToolCallSchema, { toolCallId: call.id, toolName: call.name, argumentsJson: call.argumentsJson }),
          },
          call.blockId,
        );
      }
      const answered = {
        kind: "answered",
        text: alreadySaid + accumulator.text,
        toolCalls,
        finishReason: accumulator.finishReason ?? "stop",
      } as const;
      // `text` is a payload field: the CLI's logger redacts it unless payload logging is on.
      context.logger.debug?.("model answered", {
        finish_reason: answered.finishReason,
        tool_calls: answered.toolCalls.map((call) => call.name),
        text: bounded(answered.text, MAX_LOGGED_PAYLOAD_CHARS),
      });
      return answered;
    }
    if (ending === "cut" && alreadySaid === "" && accumulator.text === "") {
      // Nothing said yet: the retry asks the same question and the model
      // reasons again from the start, so this partial reasoning would be
      // committed twice.
      if (accumulator.reasoning) context.sink.discardBlock(accumulator.reasoningBlock);
    } else {
      await commitText(context, accumulator);
    }
    if (ending === "cancelled") return { kind: "cancelled" };
    // Partial tool calls of a cut or failed stream are not committed; take them off watchers' screens.
    for (const call of accumulator.toolCalls()) context.sink.discardBlock(call.blockId);
    if (typeof consumed === "object" && consumed.kind === "failed") return consumed;
    alreadySaid += accumulator.text;
    if (resumes >= context.settings.maxStreamResumes) {
      const cut = `the provider's stream was cut ${resumes + 1} times in one answer`;
      if (!streamError) return { kind: "failed", reason: ErrorReason.PROVIDER_UNAVAILABLE, message: cut };
      const { reason, metadata } = exhaustedFailure(streamError, resumes + 1);
      return { kind: "failed", reason, message: `${cut}; last error: ${streamError.message}`, metadata };
    }
    if (streamError) {
      const waited = await backOff(context, streamError, resumes);
      if (waited.kind === "cancelled") return { kind: "cancelled" };
      if (waited.kind === "exhausted") return { kind: "failed", ...exhaustedFailure(streamError, resumes + 1) };
    }
    // With nothing said, the same request is simply asked again: no splice.
    if (alreadySaid !== "") await context.sink.commit({ case: "notice", value: spliceNotice(Buffer.byteLength(alreadySaid, "utf8")) });
  }
}

type Ending = "finished" | "cut" | "cancelled" | Extract<TurnResult, { kind: "failed" }> | Extract<ProviderFailure, { kind: "retryable" }>;

/**
 * Reads the stream to its end. An idle timer aborts this response (not the
 * run) when the provider goes quiet, which then counts as a cut. A response
 * that delivered its finish reason counts as finished even if the
 * connection dropped before `[DONE]`, and one that delivered `[DONE]` even
 * without a finish reason: the answer is whole.
 *
 * Only a lost connection (or the idle abort) is a cut. An error object the
 * provider sent in the stream is classified like an HTTP error: a fatal one
 * fails the turn with its typed reason, a transient one is returned, and
 * resumed like a cut once the run's retry budget has paid for a back-off
 * (as a failed request is retried; a rate limit is not asked again at once). An event that is not a chunk fails the turn PROVIDER_UNAVAILABLE.
 * Anything else (the sink refusing a closed run, a bug) propagates.
 * A response that outgrows the turn's bounds fails the turn with
 * LIMIT_EXCEEDED: a model stuck in a loop would otherwise grow the turn's
 * text or arguments without end.
 *
 * Deltas that arrive together (one read of the body, or one slice of it)
 * go out as one delta per block; a long burst is processed in slices that
 * let the event loop turn in between, so other runs and RPCs interleave.
 */
async function consume(
  context: RunContext,
  opened: OpenedStream,
  accumulator: ChunkAccumulator,
  deltas: DeltaCoalescer,
  timer: ProviderCallTimer,
): Promise<Ending> {
  const idle = idleWatch(opened, context.settings.streamIdleTimeoutMs);
  const slices = new EventLoopSlices(SLICE_MAX_CHUNKS, SLICE_MAX_MS, TURN_MAX_MS);
  try {
    for await (const batch of opened.data) {
      timer.chunks();
      for (const data of batch) {
        accumulator.push(parseChunk(data, opened.headers));
        // Leaving the loop cancels the response, so the provider stops generating.
        if (accumulator.overLimit) return { kind: "failed", reason: ErrorReason.LIMIT_EXCEEDED, message: accumulator.overLimit };
        if (slices.spend()) {
          deltas.flush();
          await slices.pause();
          if (context.signal.aborted) return "cancelled";
        }
      }
      deltas.flush();
    }
  } catch (error) {
    if (context.signal.aborted) return "cancelled";
    if (error instanceof SseEventTooLargeError) return { kind: "failed", reason: ErrorReason.LIMIT_EXCEEDED, message: error.message };
    if (error instanceof MalformedChunkError) return { kind: "failed", reason: ErrorReason.PROVIDER_UNAVAILABLE, message: error.message };
    if (error instanceof APIError && !isStreamCut(error)) {
      const failure = classifyProviderError(error, context.signal, context.settings);
      if (failure.kind === "fatal") return { kind: "failed", reason: failure.reason, message: failure.message, metadata: failure.metadata };
      // Not `sawDone`: the parser may have read [DONE] in the same read, but an error payload always came before it.
      if (failure.kind === "retryable" && !accumulator.finishReason) return failure;
    } else if (!isStreamCut(error)) {
      throw error;
    }
  } finally {
    idle.stop();
  }
  if (context.signal.aborted) return "cancelled";
  // Some servers end a broken answer as if it were whole: it is a cut, continued like one.
  if (accumulator.finishReason && UNFINISHED_REASONS.has(accumulator.finishReason)) return "cut";
  // [DONE] says the answer is whole even when no chunk named a finish reason; a body that just ends may be cut.
  return accumulator.finishReason || opened.data.sawDone ? "finished" : "cut";
}

/**
 * Finish reasons that say the answer stopped short for the server's own
 * reasons, not the model's: OpenRouter's "error" (the model behind it
 * failed mid-answer) and vLLM's "abort" (the request was aborted there).
 * Taken as whole, a partial answer would be committed as the model's last word.
 */
const UNFINISHED_REASONS: ReadonlySet<string> = new Set(["error", "abort"]);

/**
 * Aborts the response once its body has brought nothing for `idleMs`
 * (comments count: keep-alives say the provider is still working). The
 * timer checks when the body last read rather than being re-armed by every
 * read, which costs a stream one clock read per read of its body.
 */
function idleWatch(opened: OpenedStream, idleMs: number): { stop(): void } {
  let timer: NodeJS.Timeout;
  const check = (): void => {
    const quietMs = performance.now() - opened.data.lastReadAt;
    if (quietMs >= idleMs) opened.attempt.abort();
    else timer = setTimeout(check, idleMs - quietMs);
  };
  timer = setTimeout(check, idleMs);
  return { stop: () => clearTimeout(timer) };
}

async function commitText(context: RunContext, accumulator: ChunkAccumulator): Promise<void> {
  if (accumulator.reasoning) {
    await context.sink.commit(
      { case: "reasoning", value: create(ReasoningSchema, { text: accumulator.reasoning }) },
      accumulator.reasoningBlock,
    );
  }
  if (accumulator.text) {
    await context.sink.commit(
      { case: "assistantMessage", value: create(AssistantMessageSchema, { text: accumulator.text }) },
      accumulator.textBlock,
    );
  }
}

/**
 * A response that reported no usage: counted as unreported, so the run's
 * token counts read as a lower bound rather than a measured 0 (many
 * compatible servers never send usage; a stream can be cut before its usage
 * chunk). A whole answer's tokens are not guessed. Those of a response that
 * ended short (cut, failed or cancelled) are estimated, about four bytes a
 * token for the request's messages and for everything it streamed:
 * providers bill such responses, and a cut one is asked again, so leaving
 * them out would understate the run's usage most where it cost most.
 */
function addUnreportedUsage(
  context: RunContext,
  request: ChatCompletionMessageParam[],
  accumulator: ChunkAccumulator,
  whole: boolean,
): void {
  const received = accumulator.receivedBytes;
  if (whole || received === 0) {
    context.sink.addUsage({ unreportedRequests: 1n });
    return;
  }
  const tokens = (bytes: number): bigint => BigInt(Math.ceil(bytes / BYTES_PER_TOKEN));
  context.sink.addUsage({
    inputTokens: tokens(Buffer.byteLength(JSON.stringify(request), "utf8")),
    outputTokens: tokens(received),
    unreportedRequests: 1n,
  });
}

/** A rough average for English text and code with current tokenizers. */
const BYTES_PER_TOKEN = 4;

/** Provider token counts of one response; the request itself is counted by `sink.turn()`. */
function addUsage(context: RunContext, accumulator: ChunkAccumulator): void {
  const usage = accumulator.usage;
  if (!usage) return;
  context.sink.addUsage({
    inputTokens: tokenCount(usage.prompt_tokens),
    outputTokens: tokenCount(usage.completion_tokens),
    cachedInputTokens: tokenCount(usage.prompt_tokens_details?.cached_tokens),
    reasoningTokens: tokenCount(usage.completion_tokens_details?.reasoning_tokens),
  });
}

/**
 * A provider's token count as a whole number. Compatible servers are not
 * all strict about the type: `BigInt` threw on a fraction (RangeError) or
 * a non-numeric string, failing a run whose answer had arrived whole. A
 * fraction is rounded up, a numeric string read, anything else counts 0;
 * the core keeps the sum within uint64.
 */
function tokenCount(value: unknown): bigint {
  const count = typeof value === "string" && value.trim() !== "" ? Number(value) : value;
  return typeof count === "number" && Number.isFinite(count) && count > 0 ? BigInt(Math.ceil(count)) : 0n;
}
