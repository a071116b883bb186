import { Code, ConnectError, createConnectRouter, type ConnectRouter, type ConnectRouterOptions } from "@connectrpc/connect";
import {
  compressionBrotli,
  compressionGzip,
  universalRequestFromNodeRequest,
  universalResponseToNodeResponse,
} from "@connectrpc/connect-node";
import http from "node:http";
import http2 from "node:http2";
import https from "node:https";
import type { AddressInfo } from "node:net";
import type { Logger, Runtime } from "../runtime/index.js";
import { createAuthInterceptor } from "./auth.js";
import { withTypedProtocolErrors } from "./protocol-errors.js";
import { createErrorInterceptor, createRoutes } from "./routes.js";

/** Options for {@link startRuntimeServer}. */
export interface RuntimeServerOptions {
  /** The runtime to serve. */
  runtime: Runtime;
  /** Host to listen on, e.g. "127.0.0.1". */
  host: string;
  /** h2c port (gRPC, Connect, gRPC-Web); 0 picks a free port. */
  port: number;
  /** Optional HTTP/1.1 port (Connect and gRPC-Web for curl and browsers); 0 picks a free port. */
  http1Port?: number;
  /** Bearer token; required when `host` is not a loopback address. */
  token?: string;
  /**
   * PEM certificate and key. With TLS the main listener also speaks HTTP/1.1
   * (ALPN), so one port serves gRPC, Connect and gRPC-Web to every client.
   */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** Largest deadline a client may ask for. */
  maxTimeoutMs?: number;
  /** Structured logger. */
  logger: Logger;
  /**
   * The services to serve instead of the runtime's own routes (the Backend
   * serves routed ones); the runtime is still the one drained and closed.
   */
  routes?: (router: ConnectRouter) => void;
  /**
   * Answers requests no RPC route matches (e.g. a console's static files);
   * without it they get 404.
   */
  fallback?: (request: http.IncomingMessage | http2.Http2ServerRequest, response: http.ServerResponse | http2.Http2ServerResponse) => void;
}

/** A running server. */
export interface RuntimeServer {
  /** "host:port" of the h2c listener. */
  readonly h2Address: string;
  /** "host:port" of the HTTP/1.1 listener, if any. */
  readonly http1Address: string | undefined;
  /**
   * Graceful shutdown: the runtime drains (health NOT_SERVING, new work
   * refused), runs get `graceMs` to finish and are then interrupted, streams
   * end, listeners close, the store is flushed.
   */
  close(graceMs?: number): Promise<void>;
}

/** Thrown when the server refuses to start as configured. */
export class ServerConfigError extends Error {
  override readonly name = "ServerConfigError";
}

/**
 * Starts the runtime server: one h2c listener for gRPC, Connect and
 * gRPC-Web, and optionally one HTTP/1.1 listener with the same handlers
 * (plain-text HTTP/2 cannot also speak HTTP/1.1 on one port in Node).
 */
export async function startRuntimeServer(options: RuntimeServerOptions): Promise<RuntimeServer> {
  if (!options.token && !isLoopback(options.host)) {
    throw new ServerConfigError(
      `refusing to listen on ${options.host} without authentication: set a token with --token-file PATH or WORKER_RUNTIME_TOKEN, or listen on 127.0.0.1`,
    );
  }
  const interceptors = [createErrorInterceptor(options.logger)];
  if (options.token) interceptors.push(createAuthInterceptor(options.token));
  const limits = options.runtime.limits;
  const handler = createNodeHandler(options.routes ?? createRoutes(options.runtime), options.logger, options.fallback, {
    interceptors,
    readMaxBytes: limits.maxMessageBytes,
    writeMaxBytes: limits.maxMessageBytes,
    maxTimeoutMs: options.maxTimeoutMs ?? 5 * 60_000,
    acceptCompression: [compressionGzip, compressionBrotli],
    // Compress only large responses (e.g. big transcript pages). Watch batches of token
    // deltas are small and many; gzipping each cost ~25% of watch throughput on a 2-core
    // host, where CPU, not bandwidth, is the limit between a backend and its runtimes.
    compressMinBytes: 64 * 1024,
    // The proto3 JSON default: an unknown field or enum name is an error. connect-es
    // ignores both by default, which silently drops e.g. a misspelt status filter.
    jsonOptions: { ignoreUnknownFields: false },
  });

  const h2 = options.tls
    ? http2.createSecureServer({ cert: options.tls.cert, key: options.tls.key, allowHTTP1: true }, handler)
    : http2.createServer(handler);
  const sessions = new Set<http2.ServerHttp2Session>();
  h2.on("session", (session) => {
    sessions.add(session);
    session.once("close", () => sessions.delete(session));
  });
  const h2Address = await listen(h2, options.host, options.port);

  let h1: http.Server | undefined;
  let http1Address: string | undefined;
  if (options.http1Port !== undefined) {
    h1 = options.tls ? https.createServer({ cert: options.tls.cert, key: options.tls.key }, handler) : http.createServer(handler);
    http1Address = await listen(h1, options.host, options.http1Port);
  }

  let closing: Promise<void> | undefined;
  return {
    h2Address,
    http1Address,
    close(graceMs = 10_000) {
      closing ??= (async () => {
        await options.runtime.drain(graceMs);
        const closed = Promise.all([closeServer(h2), h1 ? closeServer(h1) : Promise.resolve()]);
        await options.runtime.close();
        for (const session of sessions) session.close();
        h1?.closeIdleConnections();
        const forced = setTimeout(() => {
          for (const session of sessions) session.destroy();
          h1?.closeAllConnections();
        }, 2_000);
        await closed;
        clearTimeout(forced);
      })();
      return closing;
    },
  };
}

/**
 * connectNodeAdapter, plus {@link withTypedProtocolErrors} around every
 * method handler (the adapter offers no hook for that).
 */
function createNodeHandler(
  routes: (router: ConnectRouter) => void,
  logger: Logger,
  fallback: RuntimeServerOptions["fallback"],
  routerOptions: ConnectRouterOptions,
): (request: http.IncomingMessage | http2.Http2ServerRequest, response: http.ServerResponse | http2.Http2ServerResponse) => void {
  const router = createConnectRouter(routerOptions);
  routes(router);
  const handlers = new Map(router.handlers.map((handler) => [handler.requestPath, withTypedProtocolErrors(handler, logger)]));
  return (request, response) => {
    const handler = handlers.get(request.url?.split("?", 2)[0] ?? "");
    if (!handler) {
      if (fallback) return fallback(request, response);
      response.writeHead(404);
      response.end();
      return;
    }
    handler(universalRequestFromNodeRequest(request, response, undefined, undefined))
      .then((universalResponse) => universalResponseToNodeResponse(universalResponse, response))
      .catch((reason: unknown) => {
        if (ConnectError.from(reason).code === Code.Aborted) return;
        logger.error("request handler failed", { path: request.url, cause: String(reason) });
      });
  };
}

function listen(server: http.Server | http2.Http2Server, host: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => {
      server.off("error", reject);
      const address = server.address() as AddressInfo;
      const shownHost = address.family === "IPv6" ? `[${address.address}]` : address.address;
      resolve(`${shownHost}:${address.port}`);
    });
  });
}

function closeServer(server: http.Server | http2.Http2Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** Whether a listen host only accepts connections from this machine. */
export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || host === "[::1]" || /^127\.\d+\.\d+\.\d+$/.test(host);
}
