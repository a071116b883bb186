import type { ChatCompletionCreateParamsStreaming, ChatCompletionMessageParam } from "openai/resources/chat/completions";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { APIConnectionTimeoutError } from "openai";
import { bounded } from "../runtime/index.js";
import { providerTraceHeaders } from "./genai-spans.js";
import { turnBudget } from "./event-loop-slices.js";
import { classifyProviderError, exhaustedFailure, type ProviderFailure } from "./provider-errors.js";
import { retryDelayMs, sleep } from "./retry.js";
import type { RunContext } from "./run-context.js";
import type { SseBatches } from "./sse-body-reader.js";
import { maxSseEventChars, NotStreamedError, SseEventTooLargeError, sseDataBatches, streamedAnswer } from "./sse-events.js";
import { toOpenAITools } from "./tools/tool-registry.js";

/** An open streamed response, with the controller that can cut it short. */
export interface OpenedStream {
  kind: "opened";
  /** The response's SSE payloads, a batch per read (see sse-events.ts). */
  data: SseBatches;
  /** The response's headers, for errors the provider sends in the stream. */
  headers: Headers;
  /** Aborts this response only (idle timeout), not the run. */
  attempt: AbortController;
  /** Stops following the run's signal; called once the response is read to its end. */
  release(): void;
}

/** The result of trying to open a streamed response. */
export type OpenResult =
  | OpenedStream
  | { kind: "cancelled" }
  | { kind: "failed"; reason: ErrorReason; message: string; metadata?: Record<string, string> };

/**
 * Opens one streamed chat completion, retrying retryable failures with
 * backoff (at least the provider's Retry-After) while the run's retry budget
 * lasts. The SDK's own retries are off (`maxRetries: 0`) so that this is the
 * only retry loop and the budget means what it says: failed attempts and
 * waits spend it, a delay that would leave less than {@link MIN_ATTEMPT_MS}
 * of it is not slept (the run fails at once), and a retry's request timeout
 * is cut to what is left of it. The first attempt of a request always gets
 * the full request timeout. Each retry is reported to the sink (watchers see
 * it live) and logged with its underlying cause. The SDK makes the request and maps error statuses; its
 * body is read by {@link sseDataBatches}, not by the SDK's iterator.
 */
export async function openStream(context: RunContext, messages: ChatCompletionMessageParam[]): Promise<OpenResult> {
  const { settings, signal, retryBudget } = context;
  const params = requestParams(context, messages);
  let timeout = settings.requestTimeoutMs;
  let previous: Extract<ProviderFailure, { kind: "retryable" }> | undefined;
  for (let attempt = 0; ; attempt++) {
    // Requests of runs that start together are spread over the loop's turns (see turnBudget).
    // No await when the budget is left: the check and the request's work must not be split by other runs' checks.
    const wait = turnBudget();
    if (wait) {
      await wait;
      if (signal.aborted) return { kind: "cancelled" };
    }
    const { controller, release } = attemptController(signal);
    const attemptStarted = Date.now();
    try {
      const response = await context.client.chat.completions
        .create(params, { signal: controller.signal, timeout, maxRetries: 0, ...providerTraceHeaders(context.trace) })
        .asResponse();
      const streamed = await streamedAnswer(response, maxSseEventChars(settings));
      if (streamed instanceof NotStreamedError || streamed instanceof SseEventTooLargeError) {
        release();
        const reason = streamed instanceof NotStreamedError ? ErrorReason.PROVIDER_REJECTED : ErrorReason.LIMIT_EXCEEDED;
        return { kind: "failed", reason, message: streamed.message };
      }
      // An error object with status 200: classified and retried below like any failed request.
      if (streamed instanceof Error) throw streamed;
      context.health.succeeded();
      const data = sseDataBatches(streamed, maxSseEventChars(settings));
      return { kind: "opened", data, headers: response.headers, attempt: controller, release };
    } catch (error) {
      release();
      const failure = classifyProviderError(error, signal, settings);
      if (failure.kind === "cancelled") return failure;
      if (failure.kind === "fatal") return { kind: "failed", reason: failure.reason, message: failure.message, metadata: failure.metadata };
      retryBudget.spend(Date.now() - attemptStarted);
      const waited = await backOff(context, failure, attempt);
      if (waited.kind === "cancelled") return waited;
      if (waited.kind === "exhausted") {
        // A retry that timed out only because the budget cut its timeout
        // says nothing about the provider; the error before it does.
        const cutShort = timeout < settings.requestTimeoutMs && error instanceof APIConnectionTimeoutError;
        const last = cutShort && previous ? previous : failure;
        const failed = exhaustedFailure(last, attempt + 1);
        context.logger.error("model request failed; the run's retry budget is spent", {
          ...logFields(context, last),
          attempts: attempt + 1,
        });
        return { kind: "failed", ...failed };
      }
      previous = failure;
      // A retry may only use what is left of the budget, or one slow attempt
      // overruns it by up to a whole request timeout.
      timeout = Math.min(settings.requestTimeoutMs, waited.remainingMs);
    }
  }
}

/**
 * Waits before retry number `attempt` (0-based) after a retryable failure,
 * out of the run's retry budget: the delay is {@link retryDelayMs}'s, the
 * retry is shown to the sink and logged first, and the wait is spent from
 * the budget. No wait is made when it would leave under
 * {@link MIN_ATTEMPT_MS} of the budget ("exhausted"; the caller fails the
 * run). `remainingMs` is what the retried request may use.
 */
export async function backOff(
  context: RunContext,
  failure: Extract<ProviderFailure, { kind: "retryable" }>,
  attempt: number,
): Promise<{ kind: "waited"; remainingMs: number } | { kind: "exhausted" } | { kind: "cancelled" }> {
  const { settings, retryBudget } = context;
  const delay = retryDelayMs(attempt, failure.retryAfterMs, settings.retry, settings.random);
  const remaining = retryBudget.remainingMs - delay;
  if (remaining < MIN_ATTEMPT_MS) return { kind: "exhausted" };
  retryBudget.retries++;
  context.sink.retry({
    attempt: retryBudget.retries,
    delayMs: delay,
    reason: failure.message,
    ...(failure.status !== undefined ? { httpStatus: failure.status } : {}),
    ...(failure.cause !== undefined ? { cause: failure.cause } : {}),
    budgetRemainingMs: remaining,
  });
  context.logger.warn("model request failed; retrying", {
    ...logFields(context, failure),
    retry: retryBudget.retries,
    delay_ms: delay,
    budget_remaining_ms: remaining,
  });
  try {
    await sleep(delay, context.signal);
  } catch {
    return { kind: "cancelled" };
  }
  retryBudget.spend(delay);
  return { kind: "waited", remainingMs: remaining };
}

/**
 * The least budget a retry is made with. Its timeout is cut to what is left
 * of the run's retry budget, which can be a fraction of a millisecond: such
 * an attempt cannot get an answer, yet the provider may receive it and start
 * work. The run fails at once instead, with the error it has. A real
 * provider takes longer than 10 ms to answer a streamed request (even on
 * localhost it has to start the model), and a budget set short on purpose
 * still gets its retries.
 */
export const MIN_ATTEMPT_MS = 10;

/**
 * One attempt's controller: aborted by the run's signal too, so that the
 * idle timeout can abort the attempt alone. A listener on the run's signal
 * instead of `AbortSignal.any`, which cost about 18 µs per request on Node
 * 20 (a run's fixed cost, issue 9). `release` drops the listener: at once
 * for an attempt that failed, when its response has been read for one that
 * opened, so a run of many turns does not pile listeners on its signal.
 */
function attemptController(run: AbortSignal): { controller: AbortController; release: () => void } {
  const controller = new AbortController();
  const follow = (): void => controller.abort(run.reason);
  if (run.aborted) follow();
  else run.addEventListener("abort", follow, { once: true });
  return { controller, release: () => run.removeEventListener("abort", follow) };
}

/** What the log says about a failed model request (never the payload). */
function logFields(context: RunContext, failure: Extract<ProviderFailure, { kind: "retryable" }>): Record<string, unknown> {
  return {
    worker_id: context.request.worker.ref?.workerId,
    run_id: context.request.run.runId,
    provider: context.settings.providerAddress,
    http_status: failure.status,
    cause: failure.cause,
    // The provider's error text can echo the prompt: redacted unless payload logging is on.
    detail: bounded(failure.message),
  };
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
