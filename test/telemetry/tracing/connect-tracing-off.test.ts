import { createClient } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus } from "../../../gen/grpc/health/v1/health_pb.js";
import { createClientTracingInterceptor, createServerTracingInterceptor, tracingSdkLoaded } from "../../../src/telemetry/tracing/index.js";
import { FAIL_NOT_FOUND, healthTransport, type Observed, observations, withHeader } from "./health-fixture.js";

/**
 * With no OpenTelemetry SDK registered (tracing off, the default) the
 * interceptors change nothing: calls and streams work, errors pass
 * unchanged, no trace context is made up or forwarded, and a handler has
 * no span, neither in its call's context values nor active. This file
 * never loads the SDK.
 */

function setUp(extraClient = withHeader("x-test", "1")) {
  const observed: Observed = observations();
  const transport = healthTransport(
    observed,
    [createServerTracingInterceptor()],
    [createClientTracingInterceptor({ rpcSystem: "connectrpc" }), extraClient],
  );
  return { observed, client: createClient(Health, transport) };
}

describe("the tracing interceptors without an SDK", () => {
  it("leave unary calls and their errors as they are, and propagate nothing", async () => {
    const { observed, client } = setUp();
    expect((await client.check({})).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    await expect(client.check({ service: FAIL_NOT_FOUND })).rejects.toMatchObject({ rawMessage: "no such service" });
    expect(observed.traceparents).toEqual([null, null]);
    expect(observed.activeSpanIds).toEqual([undefined, undefined]);
    expect(observed.callSpanIds).toEqual([undefined, undefined]);
    expect(tracingSdkLoaded()).toBe(false);
  });

  it("leave streams as they are", async () => {
    const { observed, client } = setUp();
    const statuses: HealthCheckResponse_ServingStatus[] = [];
    for await (const message of client.watch({})) statuses.push(message.status);
    expect(statuses).toHaveLength(3);
    expect(observed.activeSpanIds).toEqual([undefined, undefined, undefined]);
    expect(observed.callSpanIds).toEqual([undefined, undefined, undefined]);
  });

  it("ignore a malformed traceparent without an exception", async () => {
    const { observed, client } = setUp(withHeader("traceparent", "00-not-a-trace-context"));
    expect((await client.check({})).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    expect(observed.activeSpanIds).toEqual([undefined]);
    expect(observed.callSpanIds).toEqual([undefined]);
  });
});
