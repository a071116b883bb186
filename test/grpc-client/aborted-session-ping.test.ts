import { createServer, type Http2Server, type ServerHttp2Stream } from "node:http2";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GuardedSessionManager } from "../../src/grpc-client/index.js";

/**
 * A session manager with keepalive pings on idle connections (the
 * Backend's to each runtime) closed while a stream is still open on it (a
 * runtime removed or re-pointed while its health watch runs). When that
 * stream then closes, connect-node re-arms its ping timer for the idle
 * connection, and the timer pinged the destroyed session, which throws:
 * an uncaught exception that ended the Backend's process a ping interval
 * after a RemoveRuntime or UpdateRuntime. A real HTTP/2 server on 127.0.0.1.
 */

const PING_INTERVAL_MS = 100;
let server: Http2Server;
let baseUrl: string;
const open: ServerHttp2Stream[] = [];

beforeAll(async () => {
  server = createServer();
  // Answers with headers and never ends: a server stream such as a health watch.
  server.on("stream", (stream) => {
    open.push(stream);
    stream.on("error", () => {});
    stream.respond({ ":status": 200, "content-type": "application/grpc" });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  for (const stream of open) stream.destroy();
  await new Promise((resolve) => server.close(resolve));
});

describe("a guarded session manager closed with a stream open", () => {
  it("does not ping the destroyed session when that stream closes afterwards", async () => {
    const thrown: unknown[] = [];
    const record = (error: unknown): void => {
      thrown.push(error);
    };
    process.on("uncaughtException", record);
    try {
      const manager = new GuardedSessionManager(baseUrl, {
        pingIntervalMs: PING_INTERVAL_MS,
        pingTimeoutMs: PING_INTERVAL_MS,
        pingIdleConnection: true,
      });
      const stream = await manager.request("POST", "/svc/Watch", {}, {});
      stream.on("error", () => {});
      await new Promise((resolve) => stream.once("response", resolve));
      manager.abort();
      await new Promise((resolve) => setTimeout(resolve, PING_INTERVAL_MS * 5));
      expect(stream.closed).toBe(true);
    } finally {
      process.off("uncaughtException", record);
    }
    expect(thrown.map((error) => String(error))).toEqual([]);
  });
});
