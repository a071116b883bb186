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
 * the active context when it starts is not its caller's. The context is
 * therefore captured when the input is accepted (the SendInput server span)
 * and kept with the queued run, in memory only, so the run's span is a
 * child of the RPC that sent its input. A run that starts without one — a
 * parked run resumed after a restart — takes the context active when it
 * starts: the ResolveApproval call that resumed it.
 */

const TRACER_NAME = "worker-runtime/runtime";

/** The caller's context of each accepted, not yet started run. */
const acceptedIn = new WeakMap<Run, Context>();

/** Remembers the active context (the accepting RPC's span) for a run that was just accepted. */
export function rememberRunContext(run: Run): void {
  acceptedIn.set(run, context.active());
}

/**
 * Runs a run's execution inside its `invoke_agent` span and ends the span
 * with the outcome. `execute` never throws (run-execution.ts), so the span
 * always ends.
 */
export async function traceRun(run: Run, worker: Worker, execute: () => Promise<RunOutcome>): Promise<RunOutcome> {
  const agentName = agentNameOf(worker);
  const parent = acceptedIn.get(run) ?? context.active();
  acceptedIn.delete(run);
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
  const span = trace.getTracer(TRACER_NAME).startSpan(name, { kind: SpanKind.INTERNAL, attributes }, parent);
  const outcome = await context.with(trace.setSpan(parent, span), execute);
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
