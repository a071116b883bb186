/**
 * Whether and how to trace, read from the standard OpenTelemetry
 * environment variables. Off unless asked for: the SDK's own default
 * (`OTEL_TRACES_EXPORTER=otlp` to localhost) would make every process try to
 * export, so here tracing starts only when `OTEL_TRACES_EXPORTER` names an
 * exporter or an OTLP endpoint is set, and `OTEL_SDK_DISABLED=true` wins over
 * both. Values the SDK would silently ignore are refused with a
 * {@link TracingConfigError} naming the variable.
 */

/** Thrown for an OTEL_* value this process cannot honour. */
export class TracingConfigError extends Error {
  override readonly name = "TracingConfigError";
}

/** The span exporters this build ships. */
export type TraceExporterName = "otlp" | "console";

/** OTLP over HTTP, as protobuf (the specification's default) or JSON. */
export type OtlpProtocol = "http/protobuf" | "http/json";

/** The propagators this build ships. */
export type PropagatorName = "tracecontext" | "baggage";

/** What to set up when tracing is on. */
export interface TracingConfig {
  exporters: TraceExporterName[];
  /** For the `otlp` exporter. */
  protocol: OtlpProtocol;
  propagators: PropagatorName[];
}

/** The samplers `OTEL_TRACES_SAMPLER` may name (the SDK reads the variable itself). */
const SAMPLERS = ["always_on", "always_off", "traceidratio", "parentbased_always_on", "parentbased_always_off", "parentbased_traceidratio"];

/**
 * The tracing configuration of an environment, or undefined when tracing is
 * off (the default). Throws {@link TracingConfigError} for a bad value.
 */
export function tracingConfigFromEnv(env: NodeJS.ProcessEnv): TracingConfig | undefined {
  if (sdkDisabled(env["OTEL_SDK_DISABLED"])) return undefined;
  const exporters = exportersOf(env);
  if (exporters.length === 0) return undefined;
  checkSampler(env["OTEL_TRACES_SAMPLER"], env["OTEL_TRACES_SAMPLER_ARG"]);
  return {
    exporters,
    protocol: exporters.includes("otlp") ? protocolOf(env) : "http/protobuf",
    propagators: propagatorsOf(env["OTEL_PROPAGATORS"]),
  };
}

function sdkDisabled(value: string | undefined): boolean {
  const normalized = value?.trim().toLowerCase() ?? "";
  if (normalized === "" || normalized === "false") return false;
  if (normalized === "true") return true;
  throw new TracingConfigError(`OTEL_SDK_DISABLED must be true or false, not "${value}"`);
}

/** The exporters asked for; none means tracing stays off. */
function exportersOf(env: NodeJS.ProcessEnv): TraceExporterName[] {
  const listed = listOf(env["OTEL_TRACES_EXPORTER"]);
  if (listed.length === 0) {
    const endpoint = env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"]?.trim() || env["OTEL_EXPORTER_OTLP_ENDPOINT"]?.trim();
    return endpoint ? ["otlp"] : [];
  }
  if (listed.includes("none")) {
    if (listed.length > 1) throw new TracingConfigError(`OTEL_TRACES_EXPORTER cannot combine "none" with other exporters`);
    return [];
  }
  for (const name of listed) {
    if (name !== "otlp" && name !== "console") {
      throw new TracingConfigError(`OTEL_TRACES_EXPORTER "${name}" is not supported: use otlp, console or none`);
    }
  }
  return [...new Set(listed)] as TraceExporterName[];
}

function protocolOf(env: NodeJS.ProcessEnv): OtlpProtocol {
  const variable = env["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"]?.trim() ? "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL" : "OTEL_EXPORTER_OTLP_PROTOCOL";
  const protocol = env[variable]?.trim() || "http/protobuf";
  if (protocol === "http/protobuf" || protocol === "http/json") return protocol;
  if (protocol === "grpc") {
    throw new TracingConfigError(`${variable}=grpc is not supported: use http/protobuf (a collector's OTLP/HTTP port, usually 4318)`);
  }
  throw new TracingConfigError(`${variable} "${protocol}" is not supported: use http/protobuf or http/json`);
}

function propagatorsOf(value: string | undefined): PropagatorName[] {
  const listed = listOf(value);
  if (listed.length === 0) return ["tracecontext", "baggage"];
  if (listed.length === 1 && listed[0] === "none") return [];
  for (const name of listed) {
    if (name !== "tracecontext" && name !== "baggage") {
      throw new TracingConfigError(`OTEL_PROPAGATORS "${name}" is not supported: use tracecontext, baggage or none`);
    }
  }
  return [...new Set(listed)] as PropagatorName[];
}

function checkSampler(sampler: string | undefined, arg: string | undefined): void {
  const name = sampler?.trim() ?? "";
  if (name !== "" && !SAMPLERS.includes(name)) {
    throw new TracingConfigError(`OTEL_TRACES_SAMPLER "${name}" is not supported: use one of ${SAMPLERS.join(", ")}`);
  }
  if (name.endsWith("traceidratio") && arg !== undefined && arg.trim() !== "") {
    const ratio = Number(arg);
    if (!Number.isFinite(ratio) || ratio < 0 || ratio > 1) {
      throw new TracingConfigError(`OTEL_TRACES_SAMPLER_ARG must be a ratio between 0 and 1, not "${arg}"`);
    }
  }
}

/** A comma-separated list, trimmed, empty entries dropped. */
function listOf(value: string | undefined): string[] {
  return (value ?? "")
    .split(",")
    .map((item) => item.trim())
    .filter((item) => item !== "");
}
