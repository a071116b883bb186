import http from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRuntime, silentLogger } from "../../src/runtime/index.js";
import { type RuntimeServer, startRuntimeServer } from "../../src/server/index.js";

/**
 * DNS rebinding: a web page on attacker.example can re-point its own name at
 * 127.0.0.1, and the browser then sends the page's requests to a local
 * server with `Host: attacker.example:PORT` and treats the answers as
 * same-origin. A server without a token has only "local programs only" to
 * protect it, so its HTTP/1.1 listener (the one browsers speak) must answer
 * nothing to a Host or Origin that is not a loopback name.
 */
const GET_RUNTIME = "/worker_runtime.v1.RuntimeManagement/GetRuntime";

interface Answer {
  status: number;
  body: string;
}

/** A Connect JSON call with exactly these headers (fetch would set Host itself). */
function call(address: string, headers: Record<string, string>, path = GET_RUNTIME, method = "POST"): Promise<Answer> {
  const [hostname, port] = [address.slice(0, address.lastIndexOf(":")), address.slice(address.lastIndexOf(":") + 1)];
  return new Promise((resolve, reject) => {
    const request = http.request(
      { hostname, port, path, method, headers: { "content-type": "application/json", ...headers }, setHost: false },
      (response) => {
        let body = "";
        response.setEncoding("utf8").on("data", (chunk: string) => (body += chunk));
        response.on("end", () => resolve({ status: response.statusCode ?? 0, body }));
      },
    );
    request.on("error", reject);
    request.end(method === "POST" ? "{}" : undefined);
  });
}

describe("the HTTP/1.1 listener of a server without a token", () => {
  let server: RuntimeServer;
  let address: string;
  let port: string;

  beforeAll(async () => {
    server = await startRuntimeServer({
      runtime: await createRuntime(),
      host: "127.0.0.1",
      port: 0,
      http1Port: 0,
      allowedHosts: ["console.internal"],
      logger: silentLogger,
    });
    address = server.http1Address!;
    port = address.split(":").pop()!;
  });
  afterAll(async () => {
    await server.close(0);
  });

  it("answers loopback names: 127.0.0.1, localhost, *.localhost and [::1]", async () => {
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `console.localhost:${port}`, `[::1]:${port}`, "127.0.0.1"]) {
      expect(await call(address, { host }), host).toMatchObject({ status: 200, body: expect.stringContaining("runtimeId") });
    }
    expect(await call(address, { host: `localhost:${port}`, origin: `http://localhost:${port}` })).toMatchObject({
      status: 200,
      body: expect.stringContaining("runtimeId"),
    });
  });

  it("answers the names given in allowedHosts (--allow-host)", async () => {
    expect(await call(address, { host: `console.internal:${port}`, origin: `http://console.internal:${port}` })).toMatchObject({
      status: 200,
      body: expect.stringContaining("runtimeId"),
    });
  });

  it("refuses a rebinding page's Host, for RPCs and for the console's files alike", async () => {
    const refused = await call(address, { host: `attacker.example:${port}` });
    expect(refused.status).toBe(403);
    expect(refused.body).toContain("--allow-host");
    expect((await call(address, { host: `attacker.example:${port}` }, "/", "GET")).status).toBe(403);
    // A loopback-looking prefix is not a loopback name.
    expect((await call(address, { host: `127.0.0.1.attacker.example:${port}` })).status).toBe(403);
    expect((await call(address, { host: `localhost.attacker.example:${port}` })).status).toBe(403);
  });

  it("refuses a cross-site Origin even with a loopback Host", async () => {
    expect((await call(address, { host: `127.0.0.1:${port}`, origin: "https://attacker.example" })).status).toBe(403);
    expect((await call(address, { host: `127.0.0.1:${port}`, origin: "null" })).status).toBe(403);
  });
});

describe("a server with a token", () => {
  it("leaves Host alone: the token is what keeps strangers out (e.g. behind an ingress with its own name)", async () => {
    const server = await startRuntimeServer({
      runtime: await createRuntime(),
      host: "127.0.0.1",
      port: 0,
      http1Port: 0,
      token: "secret-token",
      logger: silentLogger,
    });
    try {
      const answer = await call(server.http1Address!, { host: "backend.example.com", authorization: "Bearer secret-token" });
      expect(answer).toMatchObject({ status: 200, body: expect.stringContaining("runtimeId") });
    } finally {
      await server.close(0);
    }
  });
});
