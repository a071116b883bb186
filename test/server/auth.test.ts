import { create, type DescMethod, type DescService } from "@bufbuild/protobuf";
import type { DescMethodStreaming, DescMethodUnary } from "@bufbuild/protobuf";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createAsyncIterable } from "@connectrpc/connect/protocol";
import { Http2SessionManager } from "@connectrpc/connect-node";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { ServerReflection } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { ServerReflection as ServerReflectionV1alpha } from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { ErrorDetailSchema, ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { RuntimeManagement } from "../../gen/worker_runtime/v1/runtime_management_pb.js";
import { WorkerCatalog } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { WorkerInteraction } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import { WorkerObservation } from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import { startCli, type CliProcess } from "../support/cli-process.js";
import { expectReason } from "../support/errors.js";
import { clientsFor, makeTransport, PROTOCOLS, startHarness, type Harness, type Protocol } from "../support/harness.js";

/**
 * Bearer-token auth: every worker and management RPC refuses a missing or
 * wrong token with UNAUTHENTICATED and the typed detail; health and
 * reflection stay open for probes and grpcurl; the right token works. The
 * methods are taken from the service descriptors, so an RPC added later is
 * covered without touching this test.
 */

const TOKEN = "s3cret-token-for-tests";
const PROTECTED: readonly DescService[] = [RuntimeManagement, WorkerCatalog, WorkerInteraction, WorkerObservation];
const protectedMethods = PROTECTED.flatMap((service) => service.methods);

/** Header sets that must not pass. */
const BAD_CREDENTIALS: readonly [string, Record<string, string>][] = [
  ["no authorization header", {}],
  ["a wrong token", { authorization: "Bearer wrong-token" }],
  ["the token with a suffix", { authorization: `Bearer ${TOKEN}x` }],
  ["a prefix of the token", { authorization: `Bearer ${TOKEN.slice(0, -1)}` }],
  ["the token without the Bearer scheme", { authorization: TOKEN }],
  ["the token under the Basic scheme", { authorization: `Basic ${TOKEN}` }],
  ["an empty bearer", { authorization: "Bearer " }],
];

let harness: Harness;
const sessions: Http2SessionManager[] = [];

beforeAll(async () => {
  harness = await startHarness({ token: TOKEN });
});

afterAll(async () => {
  for (const session of sessions) session.abort();
  await harness.close();
});

function transportFor(protocol: Protocol, headers: Record<string, string>): Transport {
  const session = new Http2SessionManager(harness.baseUrl);
  sessions.push(session);
  return makeTransport(protocol, harness.baseUrl, session, headers);
}

/**
 * Calls any method with an empty request; for streams, reads the first
 * message and then stops. Resolves when the call succeeds.
 */
async function callWithEmptyRequest(transport: Transport, method: DescMethod): Promise<void> {
  const input = create(method.input);
  if (isUnary(method)) {
    await transport.unary(method, undefined, undefined, undefined, input);
    return;
  }
  if (!isStreaming(method)) throw new Error(`unexpected method kind ${method.methodKind}`);
  const abort = new AbortController();
  try {
    const response = await transport.stream(method, abort.signal, undefined, undefined, createAsyncIterable([input]));
    for await (const message of response.message) {
      expect(message).toBeDefined();
      return;
    }
  } finally {
    abort.abort();
  }
}

function isUnary(method: DescMethod): method is DescMethodUnary {
  return method.methodKind === "unary";
}

function isStreaming(method: DescMethod): method is DescMethodStreaming {
  return method.methodKind !== "unary";
}

describe.each(PROTOCOLS)("auth over %s", (protocol) => {
  describe.each(BAD_CREDENTIALS)("with %s", (_label, headers) => {
    it.each(protectedMethods.map((method) => [`${method.parent.name}.${method.name}`, method] as const))(
      "%s is UNAUTHENTICATED with the typed detail",
      async (_name, method) => {
        const transport = transportFor(protocol, headers);
        const detail = await expectReason(() => callWithEmptyRequest(transport, method), Code.Unauthenticated, ErrorReason.UNAUTHENTICATED);
        // Nothing about the expected token leaks into the error.
        expect(JSON.stringify(detail.metadata)).not.toContain(TOKEN);
      },
    );
  });

  it("passes every protected method with the right token (whatever the handler then answers)", async () => {
    const transport = transportFor(protocol, { authorization: `Bearer ${TOKEN}` });
    for (const method of protectedMethods) {
      try {
        await callWithEmptyRequest(transport, method);
      } catch (error) {
        const connectError = ConnectError.from(error);
        expect(connectError.code, `${method.name}: ${connectError.message}`).not.toBe(Code.Unauthenticated);
        expect(connectError.findDetails(ErrorDetailSchema)[0]?.reason).not.toBe(ErrorReason.UNAUTHENTICATED);
      }
    }
    const clients = clientsFor(transport);
    const runtime = await clients.management.getRuntime({});
    expect(runtime.runtime?.runtimeId).toBe(harness.runtime.runtimeId);
    const created = await clients.catalog.createWorker({ runtimeId: harness.runtime.runtimeId });
    expect(created.worker?.ref?.workerId).toMatch(/^w-/);
    // The scheme name is case-insensitive (RFC 9110).
    const lowercase = clientsFor(transportFor(protocol, { authorization: `bearer ${TOKEN}` }));
    expect((await lowercase.management.getRuntime({})).runtime?.runtimeId).toBe(harness.runtime.runtimeId);
  });

  it("keeps health open without a token", async () => {
    const health = createClient(Health, transportFor(protocol, {}));
    expect((await health.check({})).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    expect((await health.check({ service: WorkerCatalog.typeName })).status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    const abort = new AbortController();
    for await (const message of health.watch({}, { signal: abort.signal })) {
      expect(message.status).toBe(HealthCheckResponse_ServingStatus.SERVING);
      abort.abort();
      break;
    }
  });

  it("keeps reflection v1 and v1alpha open without a token", async () => {
    const transport = transportFor(protocol, {});
    const request = { messageRequest: { case: "listServices", value: "" } } as const;
    const v1 = createClient(ServerReflection, transport).serverReflectionInfo(createAsyncIterable([request]));
    const v1alpha = createClient(ServerReflectionV1alpha, transport).serverReflectionInfo(createAsyncIterable([request]));
    for (const responses of [v1, v1alpha]) {
      const names: string[] = [];
      for await (const message of responses) {
        if (message.messageResponse.case === "listServicesResponse") {
          names.push(...message.messageResponse.value.service.map((s) => s.name));
        }
      }
      expect(names).toEqual(expect.arrayContaining(PROTECTED.map((s) => s.typeName)));
    }
  });
});

describe("serve refuses a non-loopback host without a token", () => {
  const processes: CliProcess[] = [];
  let tempDir: string;

  beforeAll(async () => {
    tempDir = await mkdtemp(path.join(os.tmpdir(), "wr-auth-"));
  });

  afterEach(() => {
    for (const cli of processes.splice(0)) cli.kill();
  });

  afterAll(async () => {
    await rm(tempDir, { recursive: true, force: true });
  });

  it("exits non-zero with a message that says how to fix it", async () => {
    const cli = startCli(["serve", "--host", "0.0.0.0", "--port", "0"]);
    processes.push(cli);
    const { code } = await cli.exited;
    expect(code).not.toBe(0);
    expect(code).not.toBeNull();
    expect(cli.stderr()).toContain("refusing to listen on 0.0.0.0 without authentication");
    expect(cli.stderr()).toMatch(/--token-file|WORKER_RUNTIME_TOKEN/);
    expect(cli.stdout()).not.toContain("listening");
  });

  it("refuses an empty token file the same way", async () => {
    const tokenFile = path.join(tempDir, "empty-token");
    await writeFile(tokenFile, "\n");
    const cli = startCli(["serve", "--host", "0.0.0.0", "--port", "0", "--token-file", tokenFile]);
    processes.push(cli);
    const { code } = await cli.exited;
    expect(code).not.toBe(0);
    expect(cli.stderr()).toContain("--token-file is empty");
  });

  it("starts on 0.0.0.0 with a token from the environment and enforces it", async () => {
    const cli = startCli(["serve", "--host", "0.0.0.0", "--port", "0"], { WORKER_RUNTIME_TOKEN: TOKEN });
    processes.push(cli);
    const listening = await cli.listening;
    const port = listening.h2c.split(":").pop() ?? "";
    const baseUrl = `http://127.0.0.1:${port}`;
    const session = new Http2SessionManager(baseUrl);
    try {
      const authed = clientsFor(makeTransport("grpc", baseUrl, session, { authorization: `Bearer ${TOKEN}` }));
      expect((await authed.management.getRuntime({})).runtime?.runtimeId).toBe(listening.runtimeId);
      const anonymous = clientsFor(makeTransport("grpc", baseUrl, session));
      await expectReason(() => anonymous.management.getRuntime({}), Code.Unauthenticated, ErrorReason.UNAUTHENTICATED);
    } finally {
      session.abort();
    }
    cli.child.kill("SIGTERM");
    expect((await cli.exited).code).toBe(0);
  });
});
