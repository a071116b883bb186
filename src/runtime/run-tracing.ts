import { type Attributes, type Context, context, type Span, SpanKind, SpanStatusCode, trace } from "@opentelemetry/api";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import type { Run } from "../../gen/worker_runtime/v1/run_pb.js";
import type { Worker } from "../../gen/worker_runtime/v1/worker_pb.js";
import type { RunOutcome } from "./execution-backend.js";
import { COMPANION_PROFILE } from "./profiles.js";

/**
 * The `invoke_agent` span of a run (OpenTelemetry GenAI agent conventions),
 * through `@opentelemetry/api` only: with no SDK registered it is a no-op.
 *
 * A run executes after SendInput has answered, often after other runs, so
 * its span's parent is the context of the call that sent its input (the
 * SendInput server span), kept with the queued run in memory; a parked run
 * resumed after a restart takes that of the ResolveApproval that resumed
 * it. Contexts travel explicitly (InputOptions, ActiveRun, RunRequest):
 * the runtime installs no ambient async context, which on Node 20 and 22
 * would put promise hooks on every promise in the process.
 */

const TRACER_NAME = "worker-runtime/runtime";

/**
 * The trace context a run accepted now keeps for its span: the caller's,
 * else the one active now (an embedder's own context manager, if any).
 */
export function callerTraceContext(explicit: Context | undefined): Context {
  return explicit ?? context.active();
}

/**
 * Runs a run's execution inside its `invoke_agent` span, a child of
 * `parent`, and ends the span with the outcome. `execute` gets the span's
 * context for the backend, and never throws (run-execution.ts), so the
 * span always ends.
 */
export async function traceRun(
  run: Run,
  worker: Worker,
  parent: Context | undefined,
  execute: (runTrace: Context) => Promise<RunOutcome>,
): Promise<RunOutcome> {
  const agentName = agentNameOf(worker);
  const callerContext = callerTraceContext(parent);
  const workerId = worker.ref?.workerId ?? "";
  const attributes: Attributes = {
    "gen_ai.operation.name": "invoke_agent",
    "gen_ai.agent.id": workerId,
    "gen_ai.conversation.id": workerId,
    "worker_runtime.runtime.id": worker.ref?.runtimeId ?? "",
    "worker_runtime.run.id": run.runId,
  };
  if (agentName !== "") attributes["gen_ai.agent.name"] = agentName;
  const name = agentName !== "" ? `invoke_agent ${agentName}` : "invoke_agent";
  const span = trace.getTracer(TRACER_NAME).startSpan(name, { kind: SpanKind.INTERNAL, attributes }, callerContext);
  const runTrace = trace.setSpan(callerContext, span);
  // Also made active, for an embedder whose own context manager carries it across awaits.
  const outcome = await context.with(runTrace, () => execute(runTrace));
  endRunSpan(span, run, outcome);
  return outcome;
}

/** The agent's name: the worker's profile (builtin, or the profile's name in its bundle). */
function agentNameOf(worker: Worker): string {
  const source = worker.profile?.source;
  if (source?.case === "builtin") return source.value;
  if (source?.case === "bundle") return source.value.profile;
  return COMPANION_PROFILE.name;
}

/** The outcome and the run's token usage on the span; a failed run is an error with its reason as `error.type`. */
function endRunSpan(span: Span, run: Run, outcome: RunOutcome): void {
  if (span.isRecording()) {
    span.setAttribute("worker_runtime.run.outcome", outcome.kind);
    if (run.usage) {
      span.setAttribute("gen_ai.usage.input_tokens", Number(run.usage.inputTokens));
      span.setAttribute("gen_ai.usage.output_tokens", Number(run.usage.outputTokens));
    }
    if (outcome.kind === "failed") {
      const reason = ErrorReason[outcome.reason] ?? "UNKNOWN";
      span.setAttribute("error.type", reason);
      span.setStatus({ code: SpanStatusCode.ERROR, message: reason });
    }
  }
  span.end();
}
