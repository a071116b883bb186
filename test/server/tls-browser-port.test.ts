import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import http2 from "node:http2";
import https from "node:https";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import tls from "node:tls";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RuntimeManagement } from "../../gen/worker_runtime/v1/runtime_management_pb.js";
import { WorkerObservation } from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import { createStaticFilesHandler } from "../../src/console/index.js";
import { createRuntime, silentLogger } from "../../src/runtime/index.js";
import { type RuntimeServer, type RuntimeServerOptions, startRuntimeServer } from "../../src/server/index.js";
import { selfSignedCertificate } from "../support/self-signed.js";

/**
 * Under --tls-cert/--tls-key the HTTP/1.1 port is the console's (what npm
 * start prints and browsers open). Browsers speak HTTP/2 only over TLS, and
 * over HTTP/1.1 they open at most six connections per host, each console
 * tab's watch holding one: so that port must offer h2 by ALPN (with an
 * HTTP/1.1 fallback) and keep what it did over HTTP/1.1 alone: the DNS
 * rebinding check without a token (an HTTP/2 request names its host in
 * `:authority`), the console's files, Connect and gRPC-Web, the polite and
 * the forced close, the taken-port error.
 */
const GET_RUNTIME = "/worker_runtime.v1.RuntimeManagement/GetRuntime";
const INDEX_HTML = "<!doctype html><title>console</title>";

let dir: string;
let cert: Buffer;
let key: Buffer;
let bundle: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "wr-tls-browser-"));
  ({ cert, key } = await selfSignedCertificate(dir));
  bundle = path.join(dir, "bundle");
  await mkdir(bundle);
  await writeFile(path.join(bundle, "index.html"), INDEX_HTML);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A TLS server like `npm start -- --tls-cert … --tls-key …` starts it: no token, the console on the HTTP/1.1 port. */
async function startTlsConsoleServer(extra: Partial<RuntimeServerOptions> = {}): Promise<RuntimeServer> {
  return startRuntimeServer({
    runtime: await createRuntime(),
    host: "127.0.0.1",
    port: 0,
    http1Port: 0,
    tls: { cert, key },
    fallback: createStaticFilesHandler(bundle),
    allowedHosts: ["console.internal"],
    logger: silentLogger,
    ...extra,
  });
}

function portOf(address: string): number {
  return Number(address.slice(address.lastIndexOf(":") + 1));
}

/** The protocol the server picks by ALPN when the client offers `protocols`. */
function negotiated(address: string, protocols: string[]): Promise<string | false | null> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect(
      { host: "127.0.0.1", port: portOf(address), ca: cert, ALPNProtocols: protocols, servername: "localhost" },
      () => {
        resolve(socket.alpnProtocol);
        socket.end();
      },
    );
    socket.on("error", reject);
  });
}

interface Answer {
  status: number;
  body: string;
}

/** One HTTP/2 request with exactly these headers on `session`. */
function h2Request(session: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const stream = session.request(headers, { endStream: body === undefined });
    let status = 0;
    let text = "";
    stream.on("response", (responseHeaders) => {
      status = Number(responseHeaders[":status"]);
    });
    stream.setEncoding("utf8").on("data", (chunk: string) => (text += chunk));
    stream.on("end", () => resolve({ status, body: text }));
    stream.on("error", reject);
    if (body !== undefined) stream.end(body);
  });
}

/** A Connect JSON GetRuntime over HTTP/2 naming `authority` (and `extra` headers). */
function h2GetRuntime(session: http2.ClientHttp2Session, authority: string, extra: http2.OutgoingHttpHeaders = {}): Promise<Answer> {
  return h2Request(
    session,
    { ":method": "POST", ":path": GET_RUNTIME, ":authority": authority, "content-type": "application/json", ...extra },
    "{}",
  );
}

/** One HTTP/1.1 request over TLS with exactly this Host header. */
function h1Request(
  address: string,
  host: string,
  requestPath = "/",
  method = "GET",
  headers: Record<string, string> = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const request = https.request(
      {
        hostname: "127.0.0.1",
        port: portOf(address),
        path: requestPath,
        method,
        headers: { host, ...headers },
        setHost: false,
        ca: cert,
        servername: "localhost",
        agent: false,
      },
      (response) => {
        let text = "";
        response.setEncoding("utf8").on("data", (chunk: string) => (text += chunk));
        response.on("end", () => resolve({ status: response.statusCode ?? 0, body: text }));
      },
    );
    request.on("error", reject);
    request.end(method === "POST" ? "{}" : undefined);
  });
}

/** An HTTP/2 session over TLS; a failure shows in its requests (a session error with none is not the test's). */
function connectH2(address: string): http2.ClientHttp2Session {
  return http2.connect(`https://${address}`, { ca: cert, servername: "localhost" }).on("error", () => undefined);
}

describe("the HTTP/1.1 port of a TLS server without a token", () => {
  let server: RuntimeServer;
  let address: string;
  let port: number;
  const sessions: http2.ClientHttp2Session[] = [];

  function session(): http2.ClientHttp2Session {
    const opened = connectH2(address);
    sessions.push(opened);
    return opened;
  }

  beforeAll(async () => {
    server = await startTlsConsoleServer();
    address = server.http1Address!;
    port = portOf(address);
  });
  afterAll(async () => {
    for (const opened of sessions) opened.destroy();
    await server.close(0);
  });

  it("negotiates HTTP/2 by ALPN, and HTTP/1.1 with a client that offers only that", async () => {
    expect(await negotiated(address, ["h2", "http/1.1"])).toBe("h2");
    expect(await negotiated(address, ["http/1.1"])).toBe("http/1.1");
  });

  it("serves the console's files and Connect over HTTP/2", async () => {
    const h2 = session();
    const page = await h2Request(h2, { ":method": "GET", ":path": "/", ":authority": `127.0.0.1:${port}` });
    expect(page).toEqual({ status: 200, body: INDEX_HTML });
    expect(await h2GetRuntime(h2, `localhost:${port}`)).toMatchObject({ status: 200, body: expect.stringContaining("runtimeId") });
  });

  it("serves the generated clients over HTTP/2 (Connect and gRPC-Web) and over HTTP/1.1", async () => {
    const baseUrl = `https://${address}`;
    const manager = new Http2SessionManager(baseUrl, {}, { ca: cert, servername: "localhost" });
    try {
      const connect = createClient(RuntimeManagement, createConnectTransport({ baseUrl, httpVersion: "2", sessionManager: manager }));
      expect((await connect.getRuntime({})).runtime?.runtimeId).not.toBe("");
      const grpcWeb = createClient(RuntimeManagement, createGrpcWebTransport({ baseUrl, httpVersion: "2", sessionManager: manager }));
      expect((await grpcWeb.getRuntime({})).runtime?.runtimeId).not.toBe("");
      const http1 = createClient(
        RuntimeManagement,
        createConnectTransport({ baseUrl, httpVersion: "1.1", nodeOptions: { ca: cert, servername: "localhost" } }),
      );
      expect((await http1.getRuntime({})).runtime?.runtimeId).not.toBe("");
    } finally {
      manager.abort();
    }
  });

  it("answers loopback and --allow-host names in :authority over HTTP/2", async () => {
    const h2 = session();
    for (const authority of [
      `127.0.0.1:${port}`,
      `localhost:${port}`,
      `console.localhost:${port}`,
      `[::1]:${port}`,
      `console.internal:${port}`,
    ]) {
      expect(await h2GetRuntime(h2, authority), authority).toMatchObject({ status: 200, body: expect.stringContaining("runtimeId") });
    }
    expect(await h2GetRuntime(h2, `localhost:${port}`, { origin: `https://localhost:${port}` })).toMatchObject({ status: 200 });
  });

  it("refuses a rebinding page's :authority over HTTP/2, for RPCs and for the console's files alike", async () => {
    const h2 = session();
    const refused = await h2GetRuntime(h2, `attacker.example:${port}`);
    expect(refused.status).toBe(403);
    expect(refused.body).toContain("--allow-host");
    expect((await h2Request(h2, { ":method": "GET", ":path": "/", ":authority": `attacker.example:${port}` })).status).toBe(403);
    expect((await h2GetRuntime(h2, `127.0.0.1.attacker.example:${port}`)).status).toBe(403);
  });

  it("refuses an HTTP/2 request whose Host differs from a loopback :authority, and a foreign Origin", async () => {
    const h2 = session();
    expect((await h2GetRuntime(h2, `127.0.0.1:${port}`, { host: `attacker.example:${port}` })).status).toBe(403);
    expect((await h2GetRuntime(h2, `127.0.0.1:${port}`, { origin: "https://attacker.example" })).status).toBe(403);
  });

  it("keeps the check over HTTP/1.1 on the same port", async () => {
    expect(await h1Request(address, `127.0.0.1:${port}`)).toEqual({ status: 200, body: INDEX_HTML });
    expect(await h1Request(address, `localhost:${port}`, GET_RUNTIME, "POST", { "content-type": "application/json" })).toMatchObject({
      status: 200,
      body: expect.stringContaining("runtimeId"),
    });
    expect((await h1Request(address, `attacker.example:${port}`)).status).toBe(403);
    expect((await h1Request(address, `attacker.example:${port}`, GET_RUNTIME, "POST", { "content-type": "application/json" })).status).toBe(
      403,
    );
  });
});

describe("closing a TLS server with clients on its HTTP/1.1 port", () => {
  it("sends GOAWAY to an idle HTTP/2 session and closes an idle HTTP/1.1 connection, without waiting for the forced close", async () => {
    // The forced close is far away (longer than the test's timeout): only the polite close can end these.
    const server = await startTlsConsoleServer({ closeTimeoutMs: 10 * 60_000 });
    const address = server.http1Address!;
    const h2 = connectH2(address);
    const goaway = new Promise<void>((resolve) => h2.once("goaway", () => resolve()));
    const sessionClosed = new Promise<void>((resolve) => h2.once("close", () => resolve()));
    const agent = new https.Agent({ keepAlive: true, ca: cert, servername: "localhost" });
    try {
      expect((await h2Request(h2, { ":method": "GET", ":path": "/", ":authority": "127.0.0.1" })).status).toBe(200);
      const idle = await new Promise<number>((resolve, reject) =>
        https
          .get({ hostname: "127.0.0.1", port: portOf(address), path: "/", agent }, (response) => {
            response.resume().on("end", () => resolve(response.statusCode ?? 0));
          })
          .on("error", reject),
      );
      expect(idle).toBe(200);
      await server.close(0);
      await goaway;
      await sessionClosed;
    } finally {
      h2.destroy();
      agent.destroy();
    }
  });

  it("cuts an HTTP/2 stream that never ends once the close budget is spent", async () => {
    const server = await startTlsConsoleServer({ closeTimeoutMs: 100 });
    const address = server.http1Address!;
    const h2 = connectH2(address);
    const goaway = new Promise<void>((resolve) => h2.once("goaway", () => resolve()));
    try {
      // A request body that never ends keeps its stream open through the polite close.
      const stream = h2.request({ ":method": "POST", ":path": GET_RUNTIME, ":authority": "127.0.0.1", "content-type": "application/json" });
      const streamClosed = new Promise<void>((resolve) => stream.once("close", () => resolve()));
      stream.on("error", () => undefined);
      stream.write("{");
      await new Promise<void>((resolve) => h2.once("remoteSettings", () => resolve()));
      await server.close(0);
      await goaway;
      await streamClosed;
    } finally {
      h2.destroy();
    }
  });

  it("ends the watch of an HTTP/2 client (a console tab) and closes, without waiting for the forced close", async () => {
    const server = await startTlsConsoleServer({ closeTimeoutMs: 10 * 60_000 });
    const baseUrl = `https://${server.http1Address!}`;
    const manager = new Http2SessionManager(baseUrl, {}, { ca: cert, servername: "localhost" });
    try {
      const runtimeId = (
        await createClient(RuntimeManagement, createConnectTransport({ baseUrl, httpVersion: "2", sessionManager: manager })).getRuntime({})
      ).runtime!.runtimeId;
      const observation = createClient(WorkerObservation, createConnectTransport({ baseUrl, httpVersion: "2", sessionManager: manager }));
      const watch = observation.watchRuntime({ runtimeId })[Symbol.asyncIterator]();
      await watch.next();
      const ended = (async () => {
        try {
          while (!(await watch.next()).done);
          return "done";
        } catch (error) {
          return String(error);
        }
      })();
      await server.close(0);
      expect(await ended).toBe("done");
    } finally {
      manager.abort();
    }
  });
});

describe("a TLS server whose HTTP/1.1 port is taken", () => {
  it("refuses to start with the address in use and leaves the main port closed", async () => {
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
    const takenPort = (taken.address() as net.AddressInfo).port;
    const mainPort = await freePort();
    try {
      await expect(startTlsConsoleServer({ port: mainPort, http1Port: takenPort })).rejects.toThrow(/EADDRINUSE/);
      // The main listener it opened first is closed again: nothing answers there.
      await expect(
        new Promise((resolve, reject) => {
          const socket = net.connect(mainPort, "127.0.0.1").on("error", reject);
          socket.on("connect", () => resolve(socket.destroy()));
        }),
      ).rejects.toThrow(/ECONNREFUSED/);
    } finally {
      await new Promise((resolve) => taken.close(resolve));
    }
  });
});

/** A port that was free a moment ago. */
async function freePort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
  const { port } = probe.address() as net.AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}
