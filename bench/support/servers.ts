import type { ConnectRouter, Transport } from "@connectrpc/connect";
import { connectNodeAdapter, createConnectTransport, createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { createRuntime, silentLogger, type Runtime, type RuntimeOptions } from "../../src/runtime/index.js";
import { startRuntimeServer, type RuntimeServer } from "../../src/server/index.js";

/**
 * Servers and client transports for benches: the real runtime server and a
 * bare connect-node server (the baseline), both on 127.0.0.1 port 0, with
 * clients over explicit HTTP/2 sessions so every bench can shut down
 * cleanly (a server with open client sessions never finishes closing).
 */

/** Wire protocols the benches compare. */
export type BenchProtocol = "grpc" | "connect";

/** Something listening that a bench must close. */
export interface BenchServer {
  baseUrl: string;
  close(): Promise<void>;
}

/** The real runtime server around a fresh runtime. */
export interface RuntimeBenchServer extends BenchServer {
  runtime: Runtime;
  server: RuntimeServer;
}

/** Starts a runtime and serves it exactly as `worker-runtime serve` does. */
export async function startRuntimeBenchServer(options: RuntimeOptions): Promise<RuntimeBenchServer> {
  const runtime = await createRuntime({ logger: silentLogger, ...options });
  const server = await startRuntimeServer({ runtime, host: "127.0.0.1", port: 0, logger: silentLogger });
  return { runtime, server, baseUrl: `http://${server.h2Address}`, close: () => server.close(0) };
}

/** Serves `routes` with nothing but connect-node's adapter: the baseline. */
export async function startBareServer(routes: (router: ConnectRouter) => void): Promise<BenchServer> {
  const server = http2.createServer(connectNodeAdapter({ routes }));
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const { port } = server.address() as AddressInfo;
  return {
    baseUrl: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const session of sessions) session.close();
        server.close(() => resolve());
      }),
  };
}

/** A transport over one explicit HTTP/2 session. */
export interface BenchTransport {
  transport: Transport;
  /** Closes the session (call before closing the server). */
  close(): void;
}

/** Opens one HTTP/2 session to `baseUrl` speaking `protocol`. */
export function openTransport(baseUrl: string, protocol: BenchProtocol): BenchTransport {
  const sessionManager = new Http2SessionManager(baseUrl);
  const init = { baseUrl, httpVersion: "2" as const, sessionManager };
  const transport = protocol === "grpc" ? createGrpcTransport(init) : createConnectTransport(init);
  return { transport, close: () => sessionManager.abort() };
}
