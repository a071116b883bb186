import { tracingConfigFromEnv } from "./tracing-config.js";

/** Tracing in this process: on (an SDK exporting spans) or off (nothing loaded). */
export interface Tracing {
  readonly enabled: boolean;
  /** Flushes buffered spans and unregisters the SDK; a no-op when off. */
  shutdown(): Promise<void>;
}

const OFF: Tracing = { enabled: false, shutdown: async () => {} };

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
  return { enabled: true, shutdown: () => installed.shutdown() };
}
