import { type Context, type Span, trace } from "@opentelemetry/api";
import type { LogFields } from "./logger.js";

/** A recording span's ids as log fields (`trace_id`, `span_id`); none for no span or one not sampled. */
export function spanLogFields(span: Span | undefined): LogFields | undefined {
  if (!span?.isRecording()) return undefined;
  const { traceId, spanId } = span.spanContext();
  return { trace_id: traceId, span_id: spanId };
}

/**
 * The ids of a trace context's span as log fields, if it has a recording
 * one: what a call's, a run's or a model turn's lines carry, since no
 * context manager makes a span active for the logger to find.
 */
export function traceLogFields(traced: Context | undefined): LogFields | undefined {
  return traced && spanLogFields(trace.getSpan(traced));
}
