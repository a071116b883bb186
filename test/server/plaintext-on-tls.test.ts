import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { mkdtemp, rm } from "node:fs/promises";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RuntimeManagement } from "../../gen/worker_runtime/v1/runtime_management_pb.js";
import { createRuntime, silentLogger } from "../../src/runtime/index.js";
import { type RuntimeServer, startRuntimeServer } from "../../src/server/index.js";
import { selfSignedCertificate } from "../support/self-signed.js";

/**
 * Plain HTTP/1.1 to a TLS port (`curl http://`, a browser) got an empty
 * reply and a closed socket, which says nothing of what is wrong. Now it is
 * answered with a short HTTP/1.1 400 saying the port speaks TLS, then the
 * connection closes. An HTTP/2 client without TLS still gets a bare close:
 * it would read that text as a protocol error, as from an HTTP/1.1 port,
 * and the CLI tells the two apart by it (test/cli/client/transport-failures.test.ts).
 * A TLS client, even one whose handshake goes wrong, never sees plain text.
 * A real TLS server (both of its ports) and raw TCP clients.
 */

let dir: string;
let cert: Buffer;
let server: RuntimeServer;
let ports: { name: string; address: string }[];

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "wr-plain-on-tls-"));
  const pair = await selfSignedCertificate(dir);
  cert = pair.cert;
  const runtime = await createRuntime();
  server = await startRuntimeServer({ runtime, host: "127.0.0.1", port: 0, http1Port: 0, tls: pair, logger: silentLogger });
  ports = [
    { name: "main port", address: server.h2Address },
    { name: "browser port", address: server.http1Address ?? "" },
  ];
});
afterAll(async () => {
  await server?.close(0);
  await rm(dir, { recursive: true, force: true });
});

/** Everything the server sends back to `bytes` on a raw TCP connection, once it closes it (within 5 s). */
function exchange(address: string, bytes: string | Buffer): Promise<string> {
  const port = Number(address.slice(address.lastIndexOf(":") + 1));
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, "127.0.0.1", () => socket.write(bytes));
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`the server did not close the connection within 5 s; it sent ${JSON.stringify(Buffer.concat(chunks).toString())}`));
    }, 5_000);
    socket.on("data", (chunk: Buffer) => chunks.push(chunk));
    socket.on("error", () => {});
    socket.on("close", () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString("latin1"));
    });
  });
}

/** The answer's status line, header lines and body. */
function parsed(reply: string): { status: string; headers: string; body: string } {
  const [head = "", body = ""] = reply.split("\r\n\r\n", 2);
  const [status = "", ...headers] = head.split("\r\n");
  return { status, headers: headers.join("\n"), body };
}

/** Expects the 400 that says the port speaks TLS: the whole body (as its Content-Length says), then the close. */
function expectTlsHint(reply: string, name: string): void {
  const { status, headers, body } = parsed(reply);
  expect(status, name).toBe("HTTP/1.1 400 Bad Request");
  expect(headers, name).toMatch(/^connection: close$/im);
  expect(headers, name).toContain(`Content-Length: ${Buffer.byteLength(body)}`);
  expect(body, name).toMatch(/speaks TLS.*https:\/\//);
}

const HTTP2_PREFACE = Buffer.concat([Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0])]);

describe("plain HTTP to a TLS port", () => {
  it("an HTTP/1.1 request (curl's GET, a Connect or gRPC-Web POST) gets a 400 saying the port speaks TLS, then the connection closes", async () => {
    for (const { name, address } of ports) {
      const post = `POST /worker_runtime.v1.RuntimeManagement/GetRuntime HTTP/1.1\r\nHost: ${address}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}`;
      for (const request of [`GET / HTTP/1.1\r\nHost: ${address}\r\n\r\n`, post]) expectTlsHint(await exchange(address, request), name);
    }
  });

  it("an HTTP/2 prior-knowledge preface (a gRPC client without TLS) gets a bare close at once", async () => {
    for (const { name, address } of ports) expect(await exchange(address, HTTP2_PREFACE), name).toBe("");
  });

  it("a TLS record that goes wrong is closed without plain text: a TLS client is never answered in HTTP", async () => {
    // A handshake record (0x16, TLS 1.0) whose message is garbage.
    const broken = Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x00, 0x05]), Buffer.from("abcde")]);
    for (const { name, address } of ports) expect(await exchange(address, broken), name).not.toMatch(/HTTP\/1\.1/);
  });

  it("a TLS client still works on both ports, gRPC and Connect", async () => {
    for (const { address } of ports) {
      const baseUrl = `https://${address}`;
      const session = new Http2SessionManager(baseUrl, {}, { ca: cert });
      try {
        const grpc = createClient(RuntimeManagement, createGrpcTransport({ baseUrl, sessionManager: session }));
        expect((await grpc.getRuntime({})).runtime?.runtimeId).not.toBe("");
        const connect = createClient(RuntimeManagement, createConnectTransport({ baseUrl, httpVersion: "1.1", nodeOptions: { ca: cert } }));
        expect((await connect.getRuntime({})).runtime?.runtimeId).not.toBe("");
      } finally {
        session.abort();
      }
    }
  });
});
