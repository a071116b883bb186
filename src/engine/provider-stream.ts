import type { Stream } from "openai/streaming";
import type {
  ChatCompletionChunk,
  ChatCompletionCreateParamsStreaming,
  ChatCompletionMessageParam,
} from "openai/resources/chat/completions";
import type { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { classifyProviderError, exhaustedFailure } from "./provider-errors.js";
import { retryDelayMs, sleep } from "./retry.js";
import type { RunContext } from "./run-context.js";
import { toOpenAITools } from "./tools/tool-registry.js";

/** An open streamed response, with the controller that can cut it short. */
export interface OpenedStream {
  kind: "opened";
  stream: Stream<ChatCompletionChunk>;
  /** Aborts this response only (idle timeout), not the run. */
  attempt: AbortController;
}

/** The result of trying to open a streamed response. */
export type OpenResult =
  | OpenedStream
  | { kind: "cancelled" }
  | { kind: "failed"; reason: ErrorReason; message: string };

/**
 * Opens one streamed chat completion, retrying retryable failures with
 * backoff (at least the provider's Retry-After) until the policy's time budget
 * would be exceeded. The SDK's own retries are off (`maxRetries: 0`) so that
 * this is the only retry loop and the budget means what it says. A delay
 * that would end past the budget is not slept: the run fails at once.
 */
export async function openStream(context: RunContext, messages: ChatCompletionMessageParam[]): Promise<OpenResult> {
  const { settings, signal } = context;
  const started = Date.now();
  const params = requestParams(context, messages);
  for (let attempt = 0; ; attempt++) {
    const controller = new AbortController();
    try {
      const stream = await context.client.chat.completions.create(params, {
        signal: AbortSignal.any([signal, controller.signal]),
        timeout: settings.requestTimeoutMs,
        maxRetries: 0,
      });
      return { kind: "opened", stream, attempt: controller };
    } catch (error) {
      const failure = classifyProviderError(error, signal, settings.secrets);
      if (failure.kind === "cancelled") return failure;
      if (failure.kind === "fatal") return { kind: "failed", reason: failure.reason, message: failure.message };
      const delay = retryDelayMs(attempt, failure.retryAfterMs, settings.retry, settings.random);
      if (Date.now() - started + delay > settings.retry.budgetMs) {
        return { kind: "failed", ...exhaustedFailure(failure, attempt + 1) };
      }
      try {
        await sleep(delay, signal);
      } catch {
        return { kind: "cancelled" };
      }
    }
  }
}

function requestParams(context: RunContext, messages: ChatCompletionMessageParam[]): ChatCompletionCreateParamsStreaming {
  const { profile, tools, settings } = context;
  const params: ChatCompletionCreateParamsStreaming = {
    model: profile.model,
    messages,
    stream: true,
    stream_options: { include_usage: true },
  };
  if (profile.temperature !== undefined) params.temperature = profile.temperature;
  if (profile.maxOutputTokens > 0) {
    if (settings.useMaxCompletionTokens) params.max_completion_tokens = profile.maxOutputTokens;
    else params.max_tokens = profile.maxOutputTokens;
  }
  if (tools.length > 0) params.tools = toOpenAITools(tools);
  return params;
}
