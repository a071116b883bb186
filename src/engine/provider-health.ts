import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { DiagnosticSeverity } from "../../gen/worker_runtime/v1/runtime_pb.js";
import type { DiagnosticsReporter } from "../runtime/index.js";

/** Diagnostic codes of provider problems, by the typed reason a run failed with. */
const PROBLEMS: ReadonlyMap<ErrorReason, { code: string; severity: DiagnosticSeverity }> = new Map([
  [ErrorReason.PROVIDER_AUTH_FAILED, { code: "provider.auth_failed", severity: DiagnosticSeverity.ERROR }],
  [ErrorReason.PROVIDER_UNAVAILABLE, { code: "provider.unavailable", severity: DiagnosticSeverity.ERROR }],
  [ErrorReason.RATE_LIMITED, { code: "provider.rate_limited", severity: DiagnosticSeverity.WARNING }],
  [ErrorReason.PROVIDER_REJECTED, { code: "provider.rejected", severity: DiagnosticSeverity.WARNING }],
]);

/** Every code this module reports. */
export const PROVIDER_DIAGNOSTIC_CODES: readonly string[] = [...PROBLEMS.values()].map((problem) => problem.code);

/**
 * Keeps the Runtime's diagnostics in step with the provider's health: a run
 * that fails because of the provider (bad key, down past the retry budget,
 * rate limited, request refused) reports one diagnostic per code — repeats
 * count up — and the next request the provider accepts clears them all.
 * Without a host (a backend used outside a Runtime) it does nothing.
 */
export class ProviderHealth {
  private reporter: DiagnosticsReporter | undefined;
  /** Whether anything is reported, so a healthy provider costs nothing per request. */
  private reported = false;

  attach(reporter: DiagnosticsReporter): void {
    this.reporter = reporter;
  }

  /** A run failed with `reason`; records it when it is a provider problem. */
  failed(reason: ErrorReason, message: string): void {
    const problem = PROBLEMS.get(reason);
    if (!problem || !this.reporter) return;
    this.reporter.report({ ...problem, message });
    this.reported = true;
  }

  /** The provider accepted a request: its problems are over. */
  succeeded(): void {
    if (!this.reported || !this.reporter) return;
    this.reporter.clear(PROVIDER_DIAGNOSTIC_CODES);
    this.reported = false;
  }
}
