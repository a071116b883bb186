import { createClient, createRouterTransport } from "@connectrpc/connect";
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RuntimeHealth } from "../../gen/worker_runtime/v1/backend_pb.js";
import { RuntimeRegistry } from "../../gen/worker_runtime/v1/runtime_registry_pb.js";
import { createBackend, type Backend } from "../../src/backend/index.js";
import { createRuntime, silentLogger } from "../../src/runtime/index.js";
import { startRuntimeServer, type RuntimeServer } from "../../src/server/index.js";
import { eventually } from "../support/harness.js";
import { expiredCertificate, selfSignedCertificate } from "../support/self-signed.js";

/**
 * The registry says why a runtime cannot be reached, as the CLI says it of
 * its own connection (grpc-client/transport-cause.ts): an untrusted or an
 * expired certificate, http:// to a TLS runtime, https:// to a plain one;
 * never a token. Real runtime servers on 127.0.0.1 over TLS and h2c.
 */
const TOKEN = "very-secret-token-77";
let dir: string;
const servers: RuntimeServer[] = [];
let backend: Backend;

async function serve(runtimeId: string, tls?: { cert: Buffer; key: Buffer }): Promise<string> {
  const runtime = await createRuntime({ logger: silentLogger, runtimeId });
  const server = await startRuntimeServer({
    runtime,
    host: "127.0.0.1",
    port: 0,
    token: TOKEN,
    logger: silentLogger,
    ...(tls ? { tls } : {}),
  });
  servers.push(server);
  return server.h2Address;
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "wr-unreachable-"));
  const good = await selfSignedCertificate(dir);
  const expired = await expiredCertificate(dir);
  const expiredPair = { cert: await readFile(expired.certFile), key: await readFile(expired.keyFile) };
  const tlsAddress = await serve("rt-tls", good);
  const expiredAddress = await serve("rt-expired", expiredPair);
  const plainAddress = await serve("rt-plain");
  await mkdir(path.join(dir, "elsewhere"));
  const elsewhere = await selfSignedCertificate(path.join(dir, "elsewhere"), "DNS:elsewhere.test");
  const wrongNameAddress = await serve("rt-wrong-name", elsewhere);
  const token = () => TOKEN;
  backend = createBackend({
    runtime: await createRuntime({ logger: silentLogger, runtimeId: "rt-emb" }),
    logger: silentLogger,
    backoff: { initialMs: 200, maxMs: 500 },
    remotes: [
      { runtimeId: "rt-untrusted", url: `https://${tlsAddress}`, token },
      { runtimeId: "rt-expired", url: `https://${expiredAddress}`, token, ca: expiredPair.cert },
      { runtimeId: "rt-tls", url: `http://${tlsAddress}`, token },
      { runtimeId: "rt-plain", url: `https://${plainAddress}`, token },
      { runtimeId: "rt-wrong-name", url: `https://${wrongNameAddress}`, token, ca: elsewhere.cert },
    ],
  });
});

afterAll(async () => {
  backend?.close();
  for (const server of servers) await server.close(0);
  await rm(dir, { recursive: true, force: true });
});

describe("an unreachable runtime's health message", () => {
  it.each([
    ["rt-untrusted", /certificate the backend does not trust \(self[- ]signed certificate\)/],
    ["rt-expired", /certificate has expired/],
    ["rt-tls", /the runtime speaks TLS; use https:\/\//],
    ["rt-plain", /the runtime does not speak TLS; use http:\/\//],
    // Node's own text would quote the url's host ("Host: 127.0.0.1. is not in the cert's altnames").
    ["rt-wrong-name", /certificate the backend does not trust \(the certificate does not name the url's host\)/],
  ])("says why %s cannot be reached, in GetRegisteredRuntime and ListRuntimes", async (runtimeId, expected) => {
    const registry = createClient(RuntimeRegistry, createRouterTransport(backend.routes));
    let message = "";
    await eventually(
      async () => {
        const runtime = (await registry.getRegisteredRuntime({ runtimeId })).runtime;
        message = runtime?.healthMessage ?? "";
        return runtime?.health === RuntimeHealth.UNAVAILABLE && expected.test(message);
      },
      10_000,
      `${runtimeId}: ${expected} (last: ${message})`,
    ).catch(() => expect(message).toMatch(expected));
    const listed = (await registry.listRuntimes({})).runtimes.find((r) => r.runtimeId === runtimeId);
    expect(listed?.healthMessage).toMatch(expected);
    expect(message).not.toContain(TOKEN);
    expect(message).not.toContain("127.0.0.1");
  });
});
