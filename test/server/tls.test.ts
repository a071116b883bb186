import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RuntimeManagement } from "../../gen/worker_runtime/v1/runtime_management_pb.js";
import { createRuntime, silentLogger } from "../../src/runtime/index.js";
import { startRuntimeServer, type RuntimeServer } from "../../src/server/index.js";
import { startCli } from "../support/cli-process.js";
import { selfSignedCertificate } from "../support/self-signed.js";

let dir: string;
let cert: Buffer;
let key: Buffer;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "wr-tls-"));
  ({ cert, key } = await selfSignedCertificate(dir));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("TLS", () => {
  let server: RuntimeServer;
  let runtimeId: string;

  beforeAll(async () => {
    const runtime = await createRuntime();
    runtimeId = runtime.runtimeId;
    server = await startRuntimeServer({ runtime, host: "127.0.0.1", port: 0, tls: { cert, key }, logger: silentLogger });
  });
  afterAll(async () => {
    await server.close(0);
  });

  it("serves gRPC over HTTP/2 and Connect over HTTP/1.1 on one TLS port", async () => {
    const baseUrl = `https://${server.h2Address}`;
    const session = new Http2SessionManager(baseUrl, {}, { ca: cert });
    try {
      const grpc = createClient(RuntimeManagement, createGrpcTransport({ baseUrl, sessionManager: session }));
      expect((await grpc.getRuntime({})).runtime?.runtimeId).toBe(runtimeId);
      const http1 = createClient(RuntimeManagement, createConnectTransport({ baseUrl, httpVersion: "1.1", nodeOptions: { ca: cert } }));
      expect((await http1.getRuntime({})).runtime?.runtimeId).toBe(runtimeId);
    } finally {
      session.abort();
    }
  });

  it("refuses clients that do not trust the certificate", async () => {
    const baseUrl = `https://${server.h2Address}`;
    const untrusting = createClient(RuntimeManagement, createConnectTransport({ baseUrl, httpVersion: "1.1" }));
    await expect(untrusting.getRuntime({})).rejects.toThrow();
  });
});

describe("serve --tls-cert/--tls-key", () => {
  it("announces an https address and serves on it", async () => {
    const cli = startCli(["serve", "--port", "0", "--tls-cert", path.join(dir, "cert.pem"), "--tls-key", path.join(dir, "key.pem")]);
    try {
      const { h2c: address } = await cli.listening;
      expect(cli.stdout()).toMatch(/listening https=127\.0\.0\.1:\d+/);
      const client = createClient(
        RuntimeManagement,
        createConnectTransport({ baseUrl: `https://${address}`, httpVersion: "1.1", nodeOptions: { ca: cert } }),
      );
      expect((await client.getRuntime({})).runtime?.runtimeId).not.toBe("");
      cli.child.kill("SIGTERM");
      expect((await cli.exited).code).toBe(0);
    } finally {
      cli.kill();
    }
  });

  it("refuses a certificate without its key", async () => {
    const cli = startCli(["serve", "--port", "0", "--tls-cert", path.join(dir, "cert.pem")]);
    expect((await cli.exited).code).not.toBe(0);
    expect(cli.stderr()).toMatch(/--tls-cert and --tls-key go together/);
  });
});
