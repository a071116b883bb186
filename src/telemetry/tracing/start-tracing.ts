import { setTimeout as delay } from "node:timers/promises";
import { tracingConfigFromEnv } from "./tracing-config.js";

/**
 * How long a process waits at exit for its last spans to be exported. The
 * exporter's own timeout (OTEL_EXPORTER_OTLP_TIMEOUT, 10 s by default, per
 * batch) would let a hung collector hold a draining pod past its
 * terminationGracePeriodSeconds, which leaves a few seconds after the drain
 * (docs/kubernetes.md); spans not out by then are dropped.
 */
export const TRACING_FLUSH_TIMEOUT_MS = 2_000;

/** Tracing in this process: on (an SDK exporting spans) or off (nothing loaded). */
export interface Tracing {
  readonly enabled: boolean;
  /**
   * Flushes buffered spans and unregisters the SDK, waiting at most
   * {@link TRACING_FLUSH_TIMEOUT_MS}; never rejects. Resolves false when
   * the export failed or did not finish in time (spans dropped): the caller
   * then logs it and exits anyway. True when off.
   */
  shutdown(): Promise<boolean>;
}

const OFF: Tracing = { enabled: false, shutdown: async () => true };

/**
 * Starts tracing when the OTEL_* environment asks for it (see
 * tracing-config.ts), loading the SDK with a dynamic import only then:
 * with tracing off no SDK module is loaded, and the spans the code makes
 * through `@opentelemetry/api` stay no-ops. Throws TracingConfigError for a
 * bad value. Call it before serving, so the first RPC is traced.
 */
export async function startTracingFromEnv(env: NodeJS.ProcessEnv, serviceName: string): Promise<Tracing> {
  const config = tracingConfigFromEnv(env);
  if (!config) return OFF;
  const { installTracingFromConfig } = await import("./tracing-sdk.js");
  const installed = await installTracingFromConfig(config, serviceName);
  return {
    enabled: true,
    shutdown: () => {
      const flushed = installed.shutdown().then(
        () => true,
        () => false,
      );
      const timedOut = delay(TRACING_FLUSH_TIMEOUT_MS, false, { ref: false });
      return Promise.race([flushed, timedOut]);
    },
  };
}
