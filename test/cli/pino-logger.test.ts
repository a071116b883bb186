import { context, trace, TraceFlags } from "@opentelemetry/api";
import { afterEach, describe, expect, it } from "vitest";
import { createPinoLogger, LogConfigError, logConfigFromEnv } from "../../src/cli/pino-logger.js";
import { childLogger } from "../../src/runtime/index.js";
import { logCapture } from "../support/log-lines.js";
import { StorageContextManager } from "../support/storage-context-manager.js";

const SPAN_CONTEXT = { traceId: "4bf92f3577b34da6a3ce929d0e0e4736", spanId: "00f067aa0ba902b7", traceFlags: TraceFlags.SAMPLED };

/** A span as a tracing SDK's would be while recording: the API's wrapper with isRecording true. */
function recordingSpan() {
  return Object.assign(Object.create(trace.wrapSpanContext(SPAN_CONTEXT)), { isRecording: () => true });
}

afterEach(() => context.disable());

describe("logConfigFromEnv", () => {
  it("defaults to info without payloads", () => {
    expect(logConfigFromEnv({})).toEqual({ level: "info", payloads: false });
    expect(logConfigFromEnv({ WORKER_RUNTIME_LOG_LEVEL: " DEBUG ", WORKER_RUNTIME_LOG_PAYLOADS: "1" })).toEqual({
      level: "debug",
      payloads: true,
    });
  });

  it("refuses a level it does not know, naming the variable and the levels", () => {
    expect(() => logConfigFromEnv({ WORKER_RUNTIME_LOG_LEVEL: "verbose" })).toThrow(LogConfigError);
    expect(() => logConfigFromEnv({ WORKER_RUNTIME_LOG_LEVEL: "verbose" })).toThrow(
      'WORKER_RUNTIME_LOG_LEVEL="verbose" is not a log level; use one of trace, debug, info, warn, error, fatal, silent',
    );
  });

  it("refuses a payload setting other than 1 or 0", () => {
    expect(() => logConfigFromEnv({ WORKER_RUNTIME_LOG_PAYLOADS: "yes" })).toThrow("WORKER_RUNTIME_LOG_PAYLOADS must be 1 or 0");
  });
});

describe("createPinoLogger", () => {
  it("writes JSON lines at or above its level, with the process fields, a run's fields (its request's) and the call's fields", () => {
    const capture = logCapture();
    const logger = createPinoLogger({ level: "info", payloads: false, destination: capture.destination, process: { runtime_id: "rt-1" } });
    logger.debug?.("hidden");
    // As the core builds a run's logger: the starting call's fields, then the run's own.
    childLogger(childLogger(logger, { request_id: "req-1", worker_id: "w-ctx" }), { run_id: "r-1" }).info("hello", { worker_id: "w-call" });
    expect(capture.lines).toEqual([
      {
        level: "info",
        time: expect.any(String),
        runtime_id: "rt-1",
        request_id: "req-1",
        worker_id: "w-call",
        run_id: "r-1",
        message: "hello",
      },
    ]);
    // One key once: the call's worker_id replaced the child's rather than repeating it.
    expect(capture.raw[0]?.match(/"worker_id"/g)).toHaveLength(1);
  });

  it("redacts credentials always, and payloads unless payload logging is on", () => {
    const line = {
      authorization: "Bearer tok-123",
      token: "tok-456",
      headers: { authorization: "Bearer tok-789" },
      api_key: "sk-1",
      secrets: { KEY: "v" },
      text: "model said",
      detail: "provider echoed the prompt",
      arguments: "{}",
      output: "file content",
      tool: "write_file",
    };
    const off = logCapture();
    createPinoLogger({ level: "info", payloads: false, destination: off.destination }).info("x", line);
    expect(off.lines[0]).toMatchObject({
      authorization: "[redacted]",
      token: "[redacted]",
      headers: { authorization: "[redacted]" },
      api_key: "[redacted]",
      secrets: "[redacted]",
      text: "[redacted]",
      detail: "[redacted]",
      arguments: "[redacted]",
      output: "[redacted]",
      tool: "write_file",
    });
    const on = logCapture();
    createPinoLogger({ level: "info", payloads: true, destination: on.destination }).info("x", line);
    expect(on.lines[0]).toMatchObject({
      token: "[redacted]",
      api_key: "[redacted]",
      text: "model said",
      detail: "provider echoed the prompt",
      output: "file content",
    });
  });

  it("adds the trace and span ids of the active span while it records, and nothing otherwise", () => {
    const capture = logCapture();
    const logger = createPinoLogger({ level: "info", payloads: false, destination: capture.destination });
    context.setGlobalContextManager(new StorageContextManager());
    context.with(trace.setSpan(context.active(), recordingSpan()), () => logger.info("in span"));
    context.with(trace.setSpan(context.active(), trace.wrapSpanContext(SPAN_CONTEXT)), () => logger.info("not recording"));
    logger.info("no span");
    expect(capture.lines[0]).toMatchObject({ trace_id: SPAN_CONTEXT.traceId, span_id: SPAN_CONTEXT.spanId });
    expect(capture.lines[1]).not.toHaveProperty("trace_id");
    expect(capture.lines[2]).not.toHaveProperty("trace_id");
  });
});
