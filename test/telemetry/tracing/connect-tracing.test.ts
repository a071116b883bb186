import { Code, createClient, createContextValues } from "@connectrpc/connect";
import { context, ROOT_CONTEXT, SpanKind, SpanStatusCode, TraceFlags, trace } from "@opentelemetry/api";
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { Health } from "../../../gen/grpc/health/v1/health_pb.js";
import { createClientTracingInterceptor, createServerTracingInterceptor, rpcTraceContext } from "../../../src/telemetry/tracing/index.js";
import { statusName } from "../../../src/telemetry/tracing/connect-tracing.js";
import { type InstalledTracing, installTracing } from "../../../src/telemetry/tracing/tracing-sdk.js";
import { eventually } from "../../support/harness.js";
import { StorageContextManager } from "../../support/storage-context-manager.js";
import { FAIL_INTERNAL, FAIL_NOT_FOUND, HANG, healthTransport, type Observed, observations, withHeader } from "./health-fixture.js";

/**
 * The Connect tracing interceptors with the SDK registered and an in-memory
 * exporter: span kinds, names, attributes and statuses per the RPC
 * conventions, parent ids across the client → server hop, trace context
 * read from and written to headers, and streaming spans that keep their
 * context across the stream and end with it.
 */

const CHECK = "grpc.health.v1.Health/Check";
const WATCH = "grpc.health.v1.Health/Watch";
const TRACE_ID = "0af7651916cd43dd8448eb211c80319c";
const PARENT_ID = "b7ad6b7169203331";

let memory: InMemorySpanExporter;
let tracing: InstalledTracing;

beforeAll(() => {
  memory = new InMemorySpanExporter();
  tracing = installTracing({ serviceName: "connect-tracing-test", spanProcessors: [new SimpleSpanProcessor(memory)] });
});
afterAll(() => tracing.shutdown());
beforeEach(() => memory.reset());

function setUp(options: { clientTracing?: boolean; header?: [string, string]; untraced?: string[] } = {}) {
  const observed: Observed = observations();
  const client = [];
  if (options.clientTracing ?? true)
    client.push(createClientTracingInterceptor({ rpcSystem: "connectrpc", serverAddress: "rt.example", serverPort: 7070 }));
  if (options.header) client.push(withHeader(...options.header));
  const server = [createServerTracingInterceptor({ untracedServices: options.untraced ?? [] })];
  return { observed, client: createClient(Health, healthTransport(observed, server, client)) };
}

const spans = (): ReadableSpan[] => memory.getFinishedSpans();
const ofKind = (kind: SpanKind): ReadableSpan[] => spans().filter((span) => span.kind === kind);

function only(kind: SpanKind): ReadableSpan {
  const found = ofKind(kind);
  expect(found).toHaveLength(1);
  return found[0] as ReadableSpan;
}

describe("the Connect tracing interceptors", () => {
  it("make a client span and a server span as its child, with the RPC attributes", async () => {
    const { observed, client } = setUp();
    await client.check({});
    const clientSpan = only(SpanKind.CLIENT);
    const serverSpan = only(SpanKind.SERVER);
    expect(clientSpan.name).toBe(CHECK);
    expect(serverSpan.name).toBe(CHECK);
    expect(clientSpan.parentSpanContext).toBeUndefined();
    expect(serverSpan.parentSpanContext?.spanId).toBe(clientSpan.spanContext().spanId);
    expect(serverSpan.spanContext().traceId).toBe(clientSpan.spanContext().traceId);
    expect(clientSpan.attributes).toEqual({
      "rpc.system.name": "connectrpc",
      "rpc.method": CHECK,
      "rpc.response.status_code": "ok",
      "server.address": "rt.example",
      "server.port": 7070,
    });
    expect(serverSpan.attributes).toEqual({ "rpc.system.name": "connectrpc", "rpc.method": CHECK, "rpc.response.status_code": "ok" });
    // The handler ran inside the server span (its call's trace context) and got the client span's context.
    expect(observed.callSpanIds).toEqual([serverSpan.spanContext().spanId]);
    expect(observed.traceparents).toEqual([`00-${clientSpan.spanContext().traceId}-${clientSpan.spanContext().spanId}-01`]);
  });

  it("fail the client span on any error but the server span only on the server's", async () => {
    const { client } = setUp();
    await expect(client.check({ service: FAIL_NOT_FOUND })).rejects.toMatchObject({ code: Code.NotFound });
    expect(only(SpanKind.CLIENT).status.code).toBe(SpanStatusCode.ERROR);
    expect(only(SpanKind.SERVER).status.code).toBe(SpanStatusCode.UNSET);
    for (const span of spans())
      expect(span.attributes).toMatchObject({ "rpc.response.status_code": "not_found", "error.type": "not_found" });

    memory.reset();
    await expect(client.check({ service: FAIL_INTERNAL })).rejects.toMatchObject({ code: Code.Internal });
    expect(only(SpanKind.SERVER).status.code).toBe(SpanStatusCode.ERROR);
    expect(only(SpanKind.SERVER).attributes["error.type"]).toBe("internal");
  });

  it("continue a caller's valid traceparent", async () => {
    const { client } = setUp({ clientTracing: false, header: ["traceparent", `00-${TRACE_ID}-${PARENT_ID}-01`] });
    await client.check({});
    const serverSpan = only(SpanKind.SERVER);
    expect(serverSpan.spanContext().traceId).toBe(TRACE_ID);
    expect(serverSpan.parentSpanContext?.spanId).toBe(PARENT_ID);
    expect(serverSpan.parentSpanContext?.isRemote).toBe(true);
  });

  it("keep a caller's decision not to sample: no span is exported, the trace still propagates", async () => {
    const { observed, client } = setUp({ clientTracing: false, header: ["traceparent", `00-${TRACE_ID}-${PARENT_ID}-00`] });
    await client.check({});
    for await (const _message of client.watch({})) {
      // Drains the stream.
    }
    expect(spans()).toEqual([]);
    // The handler still runs in the (unsampled) trace, so calls it makes carry it on.
    expect(observed.callSpanIds).toHaveLength(4);
    for (const id of observed.callSpanIds) expect(id).toMatch(/^[0-9a-f]{16}$/);
    expect(observed.callTraceIds).toEqual([TRACE_ID, TRACE_ID, TRACE_ID, TRACE_ID]);
  });

  it.each([
    ["garbage", "not a trace context"],
    ["an all-zero trace id", `00-${"0".repeat(32)}-${PARENT_ID}-01`],
    ["a bad span id", `00-${TRACE_ID}-xyz-01`],
  ])("ignore a traceparent with %s and start a new trace", async (_what, traceparent) => {
    const { client } = setUp({ clientTracing: false, header: ["traceparent", traceparent] });
    await client.check({});
    const serverSpan = only(SpanKind.SERVER);
    expect(serverSpan.parentSpanContext).toBeUndefined();
    expect(serverSpan.spanContext().traceId).not.toBe(TRACE_ID);
    expect(serverSpan.spanContext().traceId).toMatch(/^[0-9a-f]{32}$/);
  });

  it("keep a stream's span open until the stream ends, the handler's call context across awaits", async () => {
    const { observed, client } = setUp();
    let read = 0;
    for await (const _message of client.watch({})) {
      read++;
      // The stream is still going: neither span has ended.
      if (read === 1) expect(spans()).toEqual([]);
    }
    expect(read).toBe(3);
    const serverSpan = only(SpanKind.SERVER);
    const clientSpan = only(SpanKind.CLIENT);
    expect(serverSpan.name).toBe(WATCH);
    expect(serverSpan.parentSpanContext?.spanId).toBe(clientSpan.spanContext().spanId);
    expect(observed.callSpanIds).toEqual([1, 2, 3].map(() => serverSpan.spanContext().spanId));
    expect(serverSpan.attributes["rpc.response.status_code"]).toBe("ok");
    expect(clientSpan.attributes["rpc.response.status_code"]).toBe("ok");
  });

  it("leave no span active across a handler's awaits: tracing installs no context manager", async () => {
    const { observed, client } = setUp();
    await client.check({});
    expect(observed.callSpanIds).toEqual([only(SpanKind.SERVER).spanContext().spanId]);
    expect(observed.activeSpanIds).toEqual([undefined]);
  });

  it("keep the server span active across a handler's awaits for an embedder that installs a context manager", async () => {
    context.setGlobalContextManager(new StorageContextManager());
    try {
      const { observed, client } = setUp();
      for await (const _message of client.watch({})) {
        // Drains the stream.
      }
      const serverId = only(SpanKind.SERVER).spanContext().spanId;
      expect(observed.activeSpanIds).toEqual([serverId, serverId, serverId]);
      expect(observed.callSpanIds).toEqual([serverId, serverId, serverId]);
    } finally {
      context.disable();
    }
  });

  it("keep the server span active in a unary handler, and parent a client span on the active one, for an embedder with a context manager", async () => {
    context.setGlobalContextManager(new StorageContextManager());
    try {
      const { observed, client } = setUp();
      const outer = trace.wrapSpanContext({ traceId: TRACE_ID, spanId: PARENT_ID, traceFlags: TraceFlags.SAMPLED });
      await context.with(trace.setSpan(ROOT_CONTEXT, outer), () => client.check({}));
      expect(observed.activeSpanIds).toEqual([only(SpanKind.SERVER).spanContext().spanId]);
      expect(only(SpanKind.CLIENT).parentSpanContext?.spanId).toBe(PARENT_ID);
    } finally {
      context.disable();
    }
  });

  it("make a client span the child of the call whose context values the call is given", async () => {
    const { observed, client } = setUp();
    const served = trace.wrapSpanContext({ traceId: TRACE_ID, spanId: PARENT_ID, traceFlags: TraceFlags.SAMPLED });
    const contextValues = createContextValues().set(rpcTraceContext, trace.setSpan(ROOT_CONTEXT, served));
    await client.check({}, { contextValues });
    const clientSpan = only(SpanKind.CLIENT);
    expect(clientSpan.parentSpanContext?.spanId).toBe(PARENT_ID);
    expect(clientSpan.spanContext().traceId).toBe(TRACE_ID);
    expect(observed.traceparents).toEqual([`00-${TRACE_ID}-${clientSpan.spanContext().spanId}-01`]);
  });

  it("end both spans of a stream the caller cancels while the handler waits", async () => {
    const { client } = setUp();
    const abort = new AbortController();
    const stream = client.watch({ service: HANG }, { signal: abort.signal })[Symbol.asyncIterator]();
    await stream.next();
    expect(spans()).toEqual([]);
    // connect-es clients cancel a stream through its signal (their iterables have no return()).
    abort.abort();
    await expect(stream.next()).rejects.toMatchObject({ code: Code.Canceled });
    await eventually(() => ofKind(SpanKind.SERVER).length === 1 && ofKind(SpanKind.CLIENT).length === 1, 5_000, "both spans to end");
    for (const span of spans()) expect(span.attributes).toMatchObject({ "rpc.response.status_code": "canceled", "error.type": "canceled" });
    expect(only(SpanKind.CLIENT).status.code).toBe(SpanStatusCode.ERROR);
    expect(only(SpanKind.SERVER).status.code).toBe(SpanStatusCode.UNSET);
  });

  it("leave untraced services without spans", async () => {
    const { observed, client } = setUp({ clientTracing: false, untraced: [Health.typeName] });
    await client.check({});
    expect(spans()).toEqual([]);
    expect(observed.activeSpanIds).toEqual([undefined]);
  });

  it("spell status codes as each protocol does", () => {
    expect(statusName(undefined, "grpc")).toBe("OK");
    expect(statusName(Code.Canceled, "grpc")).toBe("CANCELLED");
    expect(statusName(Code.DeadlineExceeded, "grpc")).toBe("DEADLINE_EXCEEDED");
    expect(statusName(Code.Canceled, "connectrpc")).toBe("canceled");
    expect(statusName(Code.ResourceExhausted, "connectrpc")).toBe("resource_exhausted");
  });
});
