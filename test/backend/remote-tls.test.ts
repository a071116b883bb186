import { Code, ConnectError, createClient, createRouterTransport } from "@connectrpc/connect";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ServerReflection } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import { RuntimeHealth } from "../../gen/worker_runtime/v1/backend_pb.js";
import { ErrorDetailSchema, ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { RuntimeManagement } from "../../gen/worker_runtime/v1/runtime_management_pb.js";
import { RuntimeRegistry } from "../../gen/worker_runtime/v1/runtime_registry_pb.js";
import { WorkerCatalog } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { createBackend, type Backend } from "../../src/backend/index.js";
import { createRuntime, silentLogger } from "../../src/runtime/index.js";
import { startRuntimeServer, type RuntimeServer } from "../../src/server/index.js";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { WorkerObservation } from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import { startCli } from "../support/cli-process.js";
import { selfSignedCertificate } from "../support/self-signed.js";
import { eventually } from "../support/harness.js";

/**
 * A remote runtime over TLS with a bearer token, reached with the CA the
 * Backend was given; without the CA it is UNAVAILABLE with a safe message
 * (the TLS error text stays in the log).
 */
let dir: string;
let server: RuntimeServer;
let backend: Backend;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "wr-backend-tls-"));
  const { cert, key } = await selfSignedCertificate(dir);
  const remote = await createRuntime({ logger: silentLogger, runtimeId: "rt-tls" });
  server = await startRuntimeServer({
    runtime: remote,
    host: "127.0.0.1",
    port: 0,
    tls: { cert, key },
    token: "tls-token-42",
    logger: silentLogger,
  });
  backend = createBackend({
    runtime: await createRuntime({ logger: silentLogger, runtimeId: "rt-emb" }),
    logger: silentLogger,
    remotes: [
      { runtimeId: "rt-tls", url: `https://${server.h2Address}`, token: () => "tls-token-42", ca: cert },
      { runtimeId: "rt-untrusted", url: `https://${server.h2Address}`, token: () => "tls-token-42" },
    ],
  });
});

afterAll(async () => {
  backend?.close();
  await server?.close(0);
  await rm(dir, { recursive: true, force: true });
});

describe("remote runtimes over TLS", () => {
  it("connects with the configured CA and token; without the CA the runtime is UNAVAILABLE with a safe message", async () => {
    const transport = createRouterTransport(backend.routes);
    const registry = createClient(RuntimeRegistry, transport);
    await eventually(
      async () => (await registry.getRegisteredRuntime({ runtimeId: "rt-tls" })).runtime?.health === RuntimeHealth.READY,
      10_000,
      "READY",
    );
    await eventually(
      async () => (await registry.getRegisteredRuntime({ runtimeId: "rt-untrusted" })).runtime?.health === RuntimeHealth.UNAVAILABLE,
      10_000,
      "UNAVAILABLE",
    );
    const catalog = createClient(WorkerCatalog, transport);
    await catalog.createWorker({ runtimeId: "rt-tls", displayName: "over tls" });
    const page = await catalog.listWorkers({});
    expect(page.workers.map((w) => w.displayName)).toEqual(["over tls"]);
    // The cause is named (unreachable-reason.test.ts), never the token.
    expect(page.failedRuntimes.map((f) => [f.runtimeId, f.reason])).toEqual([["rt-untrusted", ErrorReason.RUNTIME_UNAVAILABLE]]);
    expect(page.failedRuntimes[0]?.message).toMatch(
      /^the runtime has a TLS certificate the backend does not trust \(self[- ]signed certificate\)/,
    );
    expect(page.failedRuntimes[0]?.message).not.toContain("tls-token-42");
    const refused = await catalog.createWorker({ runtimeId: "rt-untrusted" }).then(
      () => undefined,
      (error: unknown) => ConnectError.from(error),
    );
    expect(refused?.code).toBe(Code.Unavailable);
    expect(refused?.findDetails(ErrorDetailSchema)[0]?.reason).toBe(ErrorReason.RUNTIME_UNAVAILABLE);
    expect(refused?.rawMessage).toBe("runtime rt-untrusted is unavailable");
  });

  it("lists RuntimeRegistry beside the four services through reflection", async () => {
    const reflection = createClient(ServerReflection, createRouterTransport(backend.routes));
    async function* one(): AsyncIterable<{ messageRequest: { case: "listServices"; value: string } }> {
      yield { messageRequest: { case: "listServices", value: "" } };
    }
    for await (const answer of reflection.serverReflectionInfo(one())) {
      const names = answer.messageResponse.case === "listServicesResponse" ? answer.messageResponse.value.service.map((s) => s.name) : [];
      expect(names).toContain("worker_runtime.v1.RuntimeRegistry");
      expect(names).toContain("worker_runtime.v1.WorkerCatalog");
      break;
    }
  });
});

/**
 * Each test below starts the CLI as a process (one or two, from source through tsx), which takes
 * 5-15 s apiece on a loaded two-core machine: the 30 s they had ran out there (load ~15).
 */
const PROCESS_TEST_MS = 120_000;

describe("worker-runtime backend command", () => {
  it(
    "refuses a non-loopback address without a client token, and a bad config, with exit code 2",
    async () => {
      // Both start at once: each is a process start through tsx, the slow part of this test.
      const open = startCli(["backend", "--host", "0.0.0.0", "--port", "0"]);
      const bad = startCli(["backend", "--port", "0", "--config", path.join(dir, "missing.json")]);
      expect((await open.exited).code).toBe(2);
      expect(open.stderr()).toContain("without authentication");
      expect((await bad.exited).code).toBe(2);
      expect(bad.stderr()).toContain("cannot read --config: ENOENT");
    },
    PROCESS_TEST_MS,
  );

  it(
    "takes serve's engine settings and host secrets for its embedded runtime",
    async () => {
      const secrets = path.join(dir, "secrets.json");
      await writeFile(secrets, JSON.stringify({ PROVIDER_KEY: "s3cret" }), { mode: 0o600 });
      const args = ["backend", "--port", "0", "--runtime-id", "rt-flags", "--openai-keyless", "--openai-base-url", "http://127.0.0.1:9"];
      const cli = startCli([...args, "--openai-max-answer-bytes", "2048", "--openai-retry-budget-ms", "1500", "--secrets-file", secrets]);
      try {
        const { h2c } = await cli.listening;
        const session = new Http2SessionManager(`http://${h2c}`);
        const management = createClient(RuntimeManagement, createGrpcTransport({ baseUrl: `http://${h2c}`, sessionManager: session }));
        const { runtime } = await management.getRuntime({});
        expect([runtime?.limits?.maxAnswerBytes, runtime?.limits?.retryBudgetMs]).toEqual([2048, 1500]);
        session.abort();
      } finally {
        cli.kill();
      }
      // A secrets file others can read is refused, as by serve.
      await chmod(secrets, 0o644);
      const loose = startCli([...args, "--secrets-file", secrets]);
      expect((await loose.exited).code).toBe(2);
    },
    PROCESS_TEST_MS,
  );

  it(
    "shuts down with exit code 0 on SIGTERM while a client watches through it",
    async () => {
      const cli = startCli(["backend", "--port", "0", "--runtime-id", "rt-term"]);
      try {
        const { h2c } = await cli.listening;
        const session = new Http2SessionManager(`http://${h2c}`);
        const observation = createClient(WorkerObservation, createGrpcTransport({ baseUrl: `http://${h2c}`, sessionManager: session }));
        const watch = observation.watchRuntime({ runtimeId: "rt-term" })[Symbol.asyncIterator]();
        expect((await watch.next()).value?.snapshot?.runtime?.runtimeId).toBe("rt-term");
        const ended = (async () => {
          try {
            while (!(await watch.next()).done);
          } catch {
            // cut off by the shutdown: fine
          }
        })();
        cli.child.kill("SIGTERM");
        expect(await cli.exited).toEqual({ code: 0, signal: null });
        await ended;
        session.abort();
      } finally {
        cli.kill();
      }
    },
    PROCESS_TEST_MS,
  );
});
