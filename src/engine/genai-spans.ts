import { type Attributes, type Context, context, propagation, type Span, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import type { CompletionUsage } from "openai/resources/completions";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { childLogger, spanLogFields } from "../runtime/index.js";
import type { AssembledToolCall } from "./chunk-accumulator.js";
import type { TurnResult } from "./model-turn.js";
import type { RunContext } from "./run-context.js";
import type { ToolOutput } from "./tools/tool.js";

/**
 * Spans of the OpenTelemetry GenAI conventions for a run's model turns
 * (`chat {model}`) and tool calls (`execute_tool {name}`), children of the
 * run's `invoke_agent` span (the context the core starts the run in), and
 * the trace context on the provider request. Only names, ids, models,
 * token counts and finish reasons are recorded — never messages, tool
 * arguments or outputs. Through `@opentelemetry/api` only: no-ops without
 * an SDK, and nothing here runs per streamed chunk.
 */

const TRACER_NAME = "worker-runtime/engine";

/**
 * Longest tool name, call id or model name recorded: the first two come
 * from the model, the model from a profile a client may have pushed in a
 * config bundle, unchecked in length.
 */
const MAX_MODEL_STRING = 256;

/** Token counts of a turn's responses (a cut stream is asked again, so a turn can have several). */
const turnUsage = new WeakMap<Span, { input: number; output: number }>();

/**
 * Runs one model turn inside a `chat {model}` span (kind CLIENT), a child of
 * the run's span, ending it with the turn's result: a failed turn is an
 * error with its reason as `error.type`. The turn gets the run's context
 * with the span as its `trace`, for its provider request and response.
 */
export async function traceChat(run: RunContext, turn: (inTurn: RunContext) => Promise<TurnResult>): Promise<TurnResult> {
  const model = run.profile.model.slice(0, MAX_MODEL_STRING);
  const attributes: Attributes = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": model,
    ...serverOf(run.client.baseURL),
  };
  const span = trace.getTracer(TRACER_NAME).startSpan(`chat ${model}`, { kind: SpanKind.CLIENT, attributes }, run.trace);
  const chat = trace.setSpan(run.trace, span);
  try {
    // The turn's lines carry its span's ids (no context manager makes it active for the logger).
    const ids = spanLogFields(span);
    const inTurn = { ...run, trace: chat, logger: ids ? childLogger(run.logger, ids) : run.logger };
    const result = await context.with(chat, () => turn(inTurn));
    if (result.kind === "failed") failSpan(span, ErrorReason[result.reason] ?? "UNKNOWN");
    if (result.kind === "cancelled") span.setAttribute("error.type", "cancelled");
    return result;
  } catch (error) {
    failSpan(span, error instanceof Error ? error.name : "Error");
    throw error;
  } finally {
    span.end();
  }
}

/**
 * Records what one provider response said on the turn's `chat` span (the
 * span of `chat`, a turn's {@link RunContext.trace}): the model that
 * answered, the finish reason, and the tokens (summed over the turn's
 * responses).
 */
export function recordChatResponse(
  chat: Context,
  response: {
    model: string | undefined;
    finishReason: string | undefined;
    usage: CompletionUsage | undefined;
  },
): void {
  const span = trace.getSpan(chat);
  if (!span?.isRecording()) return;
  if (response.model) span.setAttribute("gen_ai.response.model", response.model.slice(0, MAX_MODEL_STRING));
  if (response.finishReason) span.setAttribute("gen_ai.response.finish_reasons", [response.finishReason]);
  if (response.usage) {
    const total = turnUsage.get(span) ?? { input: 0, output: 0 };
    total.input += response.usage.prompt_tokens ?? 0;
    total.output += response.usage.completion_tokens ?? 0;
    turnUsage.set(span, total);
    span.setAttribute("gen_ai.usage.input_tokens", total.input);
    span.setAttribute("gen_ai.usage.output_tokens", total.output);
  }
}

/** The trace-context headers a provider gets: never `baggage`, which carries whatever the caller put in it. */
const PROVIDER_TRACE_HEADERS = ["traceparent", "tracestate"];

/**
 * A trace context (a turn's `chat` span) as request headers (`traceparent`,
 * `tracestate`) for the provider request, as the SDK's per-request
 * `headers` option; none when there is no trace. The provider is a third
 * party, so only the W3C trace context goes to it, not the caller's baggage.
 */
export function providerTraceHeaders(chat: Context): { headers?: Record<string, string> } {
  const injected: Record<string, string> = {};
  propagation.inject(chat, injected);
  const headers: Record<string, string> = {};
  for (const name of PROVIDER_TRACE_HEADERS) {
    const value = injected[name];
    if (value !== undefined) headers[name] = value;
  }
  return Object.keys(headers).length > 0 ? { headers } : {};
}

/**
 * Runs one tool call inside an `execute_tool {name}` span. A result the
 * tool reported as an error makes the span an error (`tool_error`); a call
 * cut short by cancellation throws and is recorded as such.
 */
export async function traceTool(run: RunContext, call: AssembledToolCall, execute: () => Promise<ToolOutput>): Promise<ToolOutput> {
  // The model chose the name and id: bounded, so a runaway one cannot bloat the trace.
  const name = call.name.slice(0, MAX_MODEL_STRING);
  const attributes: Attributes = {
    "gen_ai.operation.name": "execute_tool",
    "gen_ai.tool.name": name,
    "gen_ai.tool.call.id": call.id.slice(0, MAX_MODEL_STRING),
    "gen_ai.tool.type": "function",
  };
  const span = trace.getTracer(TRACER_NAME).startSpan(`execute_tool ${name}`, { kind: SpanKind.INTERNAL, attributes }, run.trace);
  try {
    const output = await context.with(trace.setSpan(run.trace, span), execute);
    if (output.isError) failSpan(span, "tool_error");
    return output;
  } catch (error) {
    failSpan(span, "cancelled");
    throw error;
  } finally {
    span.end();
  }
}

function failSpan(span: Span, errorType: string): void {
  span.setAttribute("error.type", errorType);
  span.setStatus({ code: SpanStatusCode.ERROR, message: errorType });
}

/** `server.address` and `server.port` of the provider's base URL. */
function serverOf(baseURL: string): Attributes {
  try {
    const url = new URL(baseURL);
    const port = url.port !== "" ? Number(url.port) : url.protocol === "https:" ? 443 : 80;
    return { "server.address": url.hostname, "server.port": port };
  } catch {
    return {};
  }
}
