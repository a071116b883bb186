import { propagation, trace, type TextMapPropagator } from "@opentelemetry/api";
import { CompositePropagator, W3CBaggagePropagator, W3CTraceContextPropagator } from "@opentelemetry/core";
import { defaultResource, detectResources, envDetector, resourceFromAttributes } from "@opentelemetry/resources";
import {
  BasicTracerProvider,
  BatchSpanProcessor,
  ConsoleSpanExporter,
  type SpanExporter,
  type SpanProcessor,
} from "@opentelemetry/sdk-trace-base";
import { ATTR_SERVICE_NAME } from "@opentelemetry/semantic-conventions";
import type { PropagatorName, TracingConfig } from "./tracing-config.js";
import { SDK_LOADED } from "./sdk-loaded.js";

/**
 * The OpenTelemetry SDK set up for this process: a tracer provider, the W3C
 * propagators and the exporters. Only ever loaded by a dynamic import once
 * tracing is switched on (start-tracing.ts), so a process that does not
 * trace never loads the SDK.
 *
 * No context manager is registered: trace contexts travel explicitly (the
 * call's context values, InputOptions, RunRequest; see
 * rpc-trace-context.ts). The AsyncLocalStorage one would put promise hooks
 * on every promise in the process on Node 20 and 22: measured, it made
 * every `await` about 2.7 times as costly.
 */
(globalThis as Record<symbol, unknown>)[SDK_LOADED] = true;

/** Options for {@link installTracing}. */
export interface InstallTracingOptions {
  /** `service.name` unless OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES says otherwise. */
  serviceName: string;
  /** Where finished spans go (tests pass a SimpleSpanProcessor over an InMemorySpanExporter). */
  spanProcessors: SpanProcessor[];
  propagators?: readonly PropagatorName[];
}

/** Tracing as installed; shut it down to flush what is buffered. */
export interface InstalledTracing {
  /** Exports what is left, then unregisters the provider and propagator. */
  shutdown(): Promise<void>;
}

/**
 * Registers a tracer provider and propagator globally.
 * The sampler and span limits come from OTEL_TRACES_SAMPLER(_ARG) and the
 * OTEL_*_LIMIT variables, read by the SDK.
 */
export function installTracing(options: InstallTracingOptions): InstalledTracing {
  const detected = detectResources({ detectors: [envDetector] });
  const resource = defaultResource()
    .merge(resourceFromAttributes({ [ATTR_SERVICE_NAME]: options.serviceName }))
    .merge(detected);
  const provider = new BasicTracerProvider({ resource, spanProcessors: options.spanProcessors });
  trace.setGlobalTracerProvider(provider);
  propagation.setGlobalPropagator(propagatorOf(options.propagators ?? ["tracecontext", "baggage"]));
  return {
    async shutdown() {
      try {
        await provider.shutdown();
      } finally {
        trace.disable();
        propagation.disable();
      }
    },
  };
}

/** Installs tracing as the environment configured it (tracing-config.ts), with batched export. */
export async function installTracingFromConfig(config: TracingConfig, serviceName: string): Promise<InstalledTracing> {
  const exporters = await Promise.all(
    config.exporters.map((name) => (name === "console" ? new ConsoleSpanExporter() : otlpExporter(config))),
  );
  return installTracing({
    serviceName,
    propagators: config.propagators,
    spanProcessors: exporters.map((exporter) => new BatchSpanProcessor(exporter)),
  });
}

/** The OTLP exporter for the protocol; it reads its endpoint, headers and timeout from OTEL_EXPORTER_OTLP_*. */
async function otlpExporter(config: TracingConfig): Promise<SpanExporter> {
  if (config.protocol === "http/json") {
    const { OTLPTraceExporter } = await import("@opentelemetry/exporter-trace-otlp-http");
    return new OTLPTraceExporter();
  }
  const { OTLPTraceExporter } = await import("@opentelemetry/exporter-trace-otlp-proto");
  return new OTLPTraceExporter();
}

function propagatorOf(names: readonly PropagatorName[]): TextMapPropagator {
  const propagators: TextMapPropagator[] = names.map((name) =>
    name === "tracecontext" ? new W3CTraceContextPropagator() : new W3CBaggagePropagator(),
  );
  return new CompositePropagator({ propagators });
}
