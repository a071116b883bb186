import type { CompletionUsage } from "openai/resources/completions";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import type { RuntimeMetrics } from "../runtime/index.js";

/** How a provider call ended, for its `error_type`: ok, or why not. */
export type ProviderCallEnding = "finished" | "cut" | "cancelled" | { kind: "failed"; reason: ErrorReason };

/**
 * Times one provider call (a streamed response, its retries included) for
 * the metrics seam: duration, time to the first chunk, and the tokens the
 * provider reported. It is told once per read of the body, not per chunk,
 * and reports once, when the call ends.
 */
export class ProviderCallTimer {
  private readonly started = performance.now();
  private firstChunkAt = 0;

  constructor(
    private readonly metrics: RuntimeMetrics,
    private readonly model: string,
  ) {}

  /** A read of the response body brought chunks. */
  chunks(): void {
    if (this.firstChunkAt === 0) this.firstChunkAt = performance.now();
  }

  /** Reports the call. */
  end(ending: ProviderCallEnding, usage: CompletionUsage | undefined): void {
    const errorType = errorTypeOf(ending);
    this.metrics.providerCalled({
      model: this.model,
      durationSeconds: (performance.now() - this.started) / 1000,
      ...(this.firstChunkAt !== 0 ? { timeToFirstChunkSeconds: (this.firstChunkAt - this.started) / 1000 } : {}),
      ...(usage ? { inputTokens: usage.prompt_tokens ?? 0, outputTokens: usage.completion_tokens ?? 0 } : {}),
      ...(errorType !== undefined ? { errorType } : {}),
    });
  }
}

/** A stable, low-cardinality name of why a call failed (OTel's `error.type`); undefined when it did not. */
function errorTypeOf(ending: ProviderCallEnding): string | undefined {
  if (ending === "finished") return undefined;
  if (ending === "cut") return "stream_cut";
  if (ending === "cancelled") return "cancelled";
  return (ErrorReason[ending.reason] ?? "unknown").toLowerCase();
}
