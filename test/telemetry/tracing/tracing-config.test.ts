import { describe, expect, it } from "vitest";
import { TracingConfigError, tracingConfigFromEnv } from "../../../src/telemetry/tracing/tracing-config.js";

/** Which OTEL_* environments switch tracing on, with what, and which are refused. */

const DEFAULTS = { protocol: "http/protobuf", propagators: ["tracecontext", "baggage"] };

describe("the tracing configuration from OTEL_* variables", () => {
  it.each<[string, NodeJS.ProcessEnv]>([
    ["no variables", {}],
    ["only a service name", { OTEL_SERVICE_NAME: "rt" }],
    ["the none exporter", { OTEL_TRACES_EXPORTER: "none", OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318" }],
    ["OTEL_SDK_DISABLED=true", { OTEL_SDK_DISABLED: "TRUE", OTEL_TRACES_EXPORTER: "otlp" }],
  ])("is off with %s", (_what, env) => {
    expect(tracingConfigFromEnv(env)).toBeUndefined();
  });

  it.each<[string, NodeJS.ProcessEnv, object]>([
    ["OTEL_TRACES_EXPORTER=otlp", { OTEL_TRACES_EXPORTER: "otlp" }, { exporters: ["otlp"], ...DEFAULTS }],
    ["an OTLP endpoint", { OTEL_EXPORTER_OTLP_ENDPOINT: "http://collector:4318" }, { exporters: ["otlp"], ...DEFAULTS }],
    ["a traces endpoint", { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: "http://c:4318/v1/traces" }, { exporters: ["otlp"], ...DEFAULTS }],
    [
      "console and otlp",
      { OTEL_TRACES_EXPORTER: " console , otlp ", OTEL_SDK_DISABLED: "false" },
      { exporters: ["console", "otlp"], ...DEFAULTS },
    ],
    [
      "OTLP over JSON and only tracecontext",
      { OTEL_TRACES_EXPORTER: "otlp", OTEL_EXPORTER_OTLP_PROTOCOL: "http/json", OTEL_PROPAGATORS: "tracecontext" },
      { exporters: ["otlp"], protocol: "http/json", propagators: ["tracecontext"] },
    ],
    [
      "the traces protocol over the general one",
      { OTEL_TRACES_EXPORTER: "otlp", OTEL_EXPORTER_OTLP_PROTOCOL: "grpc", OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: "http/protobuf" },
      { exporters: ["otlp"], ...DEFAULTS },
    ],
    [
      "a ratio sampler",
      { OTEL_TRACES_EXPORTER: "console", OTEL_TRACES_SAMPLER: "parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG: "0.25" },
      { exporters: ["console"], ...DEFAULTS },
    ],
  ])("is on with %s", (_what, env, expected) => {
    expect(tracingConfigFromEnv(env)).toEqual(expected);
  });

  it.each<[NodeJS.ProcessEnv, string]>([
    [{ OTEL_SDK_DISABLED: "yes" }, "OTEL_SDK_DISABLED must be true or false"],
    [{ OTEL_TRACES_EXPORTER: "jaeger" }, `OTEL_TRACES_EXPORTER "jaeger" is not supported`],
    [{ OTEL_TRACES_EXPORTER: "none,otlp" }, `cannot combine "none"`],
    [{ OTEL_TRACES_EXPORTER: "otlp", OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" }, "OTEL_EXPORTER_OTLP_PROTOCOL=grpc is not supported"],
    [{ OTEL_TRACES_EXPORTER: "otlp", OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: "thrift" }, `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL "thrift"`],
    [{ OTEL_TRACES_EXPORTER: "otlp", OTEL_PROPAGATORS: "b3" }, `OTEL_PROPAGATORS "b3" is not supported`],
    [{ OTEL_TRACES_EXPORTER: "otlp", OTEL_TRACES_SAMPLER: "sometimes" }, `OTEL_TRACES_SAMPLER "sometimes"`],
    [
      { OTEL_TRACES_EXPORTER: "otlp", OTEL_TRACES_SAMPLER: "traceidratio", OTEL_TRACES_SAMPLER_ARG: "2" },
      "OTEL_TRACES_SAMPLER_ARG must be a ratio",
    ],
  ])("refuses %o", (env, message) => {
    expect(() => tracingConfigFromEnv(env)).toThrow(TracingConfigError);
    expect(() => tracingConfigFromEnv(env)).toThrow(message);
  });
});
