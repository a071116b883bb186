import { createConnectRouter, type ConnectRouter, type ConnectRouterOptions, type Interceptor } from "@connectrpc/connect";
import {
  compressionBrotli,
  compressionGzip,
  universalRequestFromNodeRequest,
  universalResponseToNodeResponse,
} from "@connectrpc/connect-node";
import http from "node:http";
import http2 from "node:http2";
import type net from "node:net";
import { type AddressInfo, isIPv4 } from "node:net";
import tls from "node:tls";
import { errorLogFields, type Logger, type Runtime } from "../runtime/index.js";
import { createServerTracingInterceptor } from "../telemetry/tracing/index.js";
import { createAuthInterceptor } from "./auth.js";
import { refuseBrowserHost, refusedBrowserHost } from "./browser-host-check.js";
import { isClientGone } from "./error-mapping.js";
import { DEFAULT_KEEPALIVE, type KeepaliveOptions, keepSessionAlive } from "./session-keepalive.js";
import { createUnansweredPingLog } from "./unanswered-ping-log.js";
import { answerPlainHttpOnTls } from "./plaintext-on-tls.js";
import { withTypedProtocolErrors } from "./protocol-errors.js";
import { captureGrpcDirectMethods } from "./grpc-direct-calls.js";
import { endsWithoutTrailerFields, resetOnceEndStreamSent, writeStreamResponse } from "./http2-stream-response.js";
import { createErrorInterceptor, createRoutes, UNTRACED_SERVICES } from "./routes.js";
import { createLoggingInterceptor } from "./rpc-logging.js";

/** Options for {@link startRuntimeServer}. */
export interface RuntimeServerOptions {
  /** The runtime to serve. */
  runtime: Runtime;
  /** Host to listen on, e.g. "127.0.0.1". */
  host: string;
  /** h2c port (gRPC, Connect, gRPC-Web); 0 picks a free port. */
  port: number;
  /**
   * Optional port for browsers and curl (Connect and gRPC-Web; the console's
   * files with `fallback`); 0 picks a free port. HTTP/1.1, and with TLS also
   * HTTP/2 by ALPN, so a browser multiplexes every tab over one connection.
   */
  http1Port?: number;
  /** Bearer token; required when `host` is not a loopback address. */
  token?: string;
  /**
   * PEM certificate and key. With TLS the main listener also speaks HTTP/1.1
   * (ALPN), so one port serves gRPC, Connect and gRPC-Web to every client.
   */
  tls?: { cert: string | Buffer; key: string | Buffer };
  /**
   * After the drain, how long connections get to close politely (GOAWAY,
   * idle HTTP/1.1 closed) before every socket is destroyed; default 2000.
   */
  closeTimeoutMs?: number;
  /** Largest deadline a client may ask for. */
  maxTimeoutMs?: number;
  /**
   * Most open streams per HTTP/2 connection (SETTINGS_MAX_CONCURRENT_STREAMS);
   * past it a client's next call waits for one to end (a Node 24 client may
   * send it as one ends, and it is refused: ENHANCE_YOUR_CALM). Default
   * {@link DEFAULT_MAX_CONCURRENT_STREAMS}.
   */
  maxConcurrentStreams?: number;
  /** HTTP/2 keepalive: how a connection whose peer vanished is found and closed (default {@link DEFAULT_KEEPALIVE}). */
  keepalive?: KeepaliveOptions;
  /** Structured logger. */
  logger: Logger;
  /**
   * Interceptors around every RPC, outside the error mapping (so they see
   * the mapped ConnectError) and the auth check; e.g. RPC metrics.
   */
  interceptors?: Interceptor[];
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
  /**
   * Without a token, the `http1Port` listener (the one browsers speak) answers
   * only a Host (`:authority` over HTTP/2) and Origin naming loopback, against DNS rebinding
   * (browser-host-check.ts); these host names are accepted too (--allow-host).
   */
  allowedHosts?: readonly string[];
}

/** A running server. */
export interface RuntimeServer {
  /** "host:port" of the h2c listener. */
  readonly h2Address: string;
  /** "host:port" of the `http1Port` listener (HTTP/1.1, plus HTTP/2 with TLS), if any. */
  readonly http1Address: string | undefined;
  /**
   * Graceful shutdown: the runtime drains (health NOT_SERVING, new work
   * refused), runs get `graceMs` to finish and are then interrupted, streams
   * end, listeners close, the store is flushed. `cut` ends the grace early
   * (runs are interrupted at once), e.g. on an operator's second signal.
   * Rejects as the runtime's close does (a CloseTimeoutError past the
   * runtime's flushTimeoutMs), once the connections are closed all the same.
   */
  close(graceMs?: number, cut?: AbortSignal): Promise<void>;
}

/** Thrown when the server refuses to start as configured. */
export class ServerConfigError extends Error {
  override readonly name = "ServerConfigError";
}

/**
 * Open streams per HTTP/2 connection unless configured. Finite (Node's
 * default is 2^32-1), yet far above what one client needs: a Backend relays
 * every browser's watch of a runtime over one connection to it.
 */
export const DEFAULT_MAX_CONCURRENT_STREAMS = 10_000;

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
  // Tracing outermost: its span covers the others' work (so their log lines carry its trace id)
  // and sees each call's final, mapped status.
  const interceptors = [
    createServerTracingInterceptor({ untracedServices: UNTRACED_SERVICES }),
    createLoggingInterceptor(options.logger),
    ...(options.interceptors ?? []),
    createErrorInterceptor(options.logger),
  ];
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

  const settings = { maxConcurrentStreams: options.maxConcurrentStreams ?? DEFAULT_MAX_CONCURRENT_STREAMS };
  const h2 = options.tls
    ? http2.createSecureServer({ cert: options.tls.cert, key: options.tls.key, allowHTTP1: true, settings }, handler)
    : http2.createServer({ settings }, handler);
  // Every HTTP/2 session on every listener, for the polite close (GOAWAY) and the forced one.
  const sessions = new Set<http2.ServerHttp2Session>();
  const keepalive = options.keepalive ?? DEFAULT_KEEPALIVE;
  const pingLog = createUnansweredPingLog(options.logger);
  const trackSession = (session: http2.ServerHttp2Session): void => {
    sessions.add(session);
    keepSessionAlive(session, keepalive, pingLog.reaped, socketOf);
    session.once("close", () => sessions.delete(session));
  };
  h2.on("session", trackSession);
  // Every raw socket on every listener: a client can hold one with no session
  // (silent since connecting, or its session already gone) or stop reading, and
  // only destroying the socket itself ends such a connection.
  const sockets = new Set<net.Socket>();
  const track = (socket: net.Socket): void => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  };
  h2.on("connection", track);
  // A session's own socket is a proxy that cannot be destroyed, and a TLS socket whose handshake failed is
  // destroyed already: the raw one is found by its peer's address and the local port (one client may reach
  // both listeners from one source port).
  const rawSocketOf = (peer: net.Socket | undefined): net.Socket | undefined => {
    const { remoteAddress, remotePort, localPort } = peer ?? {};
    for (const socket of sockets) {
      if (socket.remotePort === remotePort && socket.remoteAddress === remoteAddress && socket.localPort === localPort) return socket;
    }
    return undefined;
  };
  const socketOf = (session: http2.ServerHttp2Session): net.Socket | undefined => rawSocketOf(session.socket);
  if (h2 instanceof tls.Server) answerPlainHttpOnTls(h2, rawSocketOf);
  const h2Address = await listen(h2, options.host, options.port);
  // The host was trusted by its name; what the name resolved to decides (a hosts file may map localhost elsewhere).
  const bound = (h2.address() as AddressInfo).address;
  if (!options.token && !isLoopbackAddress(bound)) {
    h2.close();
    throw new ServerConfigError(
      `refusing to listen on ${options.host} without authentication: it resolved to ${bound}, not a loopback address; set a token with --token-file PATH or WORKER_RUNTIME_TOKEN, or listen on 127.0.0.1`,
    );
  }

  let h1: http.Server | http2.Http2SecureServer | undefined;
  let http1Address: string | undefined;
  if (options.http1Port !== undefined) {
    const h1Handler = options.token ? handler : hostChecked(handler, new Set(options.allowedHosts?.map((name) => name.toLowerCase())));
    // The port browsers open. Over TLS it offers HTTP/2 by ALPN (HTTP/1.1 for clients that ask for it):
    // a browser speaks HTTP/2 only over TLS, and over HTTP/1.1 it opens six connections per host, which
    // six console tabs' watches fill. Plain text stays HTTP/1.1: no browser speaks h2c.
    if (options.tls) {
      const secure = http2.createSecureServer({ cert: options.tls.cert, key: options.tls.key, allowHTTP1: true, settings }, h1Handler);
      secure.on("session", trackSession);
      answerPlainHttpOnTls(secure, rawSocketOf);
      h1 = secure;
    } else {
      h1 = http.createServer(h1Handler);
    }
    h1.on("connection", track);
    // A taken HTTP/1.1 port must not leave the h2c listener open: it would keep the process alive.
    http1Address = await listen(h1, options.host, options.http1Port).catch((error: unknown) => {
      h2.close();
      throw error;
    });
  }

  let closing: Promise<void> | undefined;
  return {
    h2Address,
    http1Address,
    close(graceMs = 10_000, cut?: AbortSignal) {
      closing ??= (async () => {
        await options.runtime.drain(graceMs, cut);
        const closed = Promise.all([closeServer(h2), h1 ? closeServer(h1) : Promise.resolve()]);
        // A close past its bound (a hung store: CloseTimeoutError) still closes the connections, then is thrown.
        const runtimeClosed = await options.runtime.close().then(
          () => ({ ok: true as const }),
          (error: unknown) => ({ ok: false as const, error }),
        );
        // Polite first: GOAWAY lets clients finish what is in flight.
        for (const session of sessions) session.close();
        // (An HTTP/2 server with allowHTTP1 closes its idle HTTP/1.1 connections itself on close.)
        if (h1 instanceof http.Server) h1.closeIdleConnections();
        // Then, whatever the clients do, every connection ends after a bounded close.
        const forced = setTimeout(() => {
          for (const session of sessions) session.destroy();
          if (h1 instanceof http.Server) h1.closeAllConnections();
          for (const socket of sockets) socket.destroy();
        }, options.closeTimeoutMs ?? DEFAULT_CLOSE_TIMEOUT_MS);
        await closed;
        clearTimeout(forced);
        // Every session is closed, so no more reaps: the last window's count is written now, not lost with the process.
        pingLog.flush();
        if (!runtimeClosed.ok) throw runtimeClosed.error;
      })();
      return closing;
    },
  };
}

/** `handler` behind the DNS-rebinding check of a server without a token (browser-host-check.ts). */
function hostChecked(handler: NodeHandler, allowedHosts: ReadonlySet<string>): NodeHandler {
  return (request, response) => {
    const refused = refusedBrowserHost(request, allowedHosts);
    if (refused === undefined) handler(request, response);
    else refuseBrowserHost(response, refused);
  };
}

/** How long connections get to close politely after the drain, before they are destroyed. */
const DEFAULT_CLOSE_TIMEOUT_MS = 2_000;

/** A request handler for both Node servers: HTTP/1.1 (and HTTP/2's compatibility API). */
type NodeHandler = (
  request: http.IncomingMessage | http2.Http2ServerRequest,
  response: http.ServerResponse | http2.Http2ServerResponse,
) => void;

/**
 * connectNodeAdapter, plus {@link withTypedProtocolErrors} around every
 * method handler (the adapter offers no hook for that).
 */
function createNodeHandler(
  routes: (router: ConnectRouter) => void,
  logger: Logger,
  fallback: RuntimeServerOptions["fallback"],
  routerOptions: ConnectRouterOptions,
): NodeHandler {
  const router = createConnectRouter(routerOptions);
  const grpcCalls = captureGrpcDirectMethods(router, routerOptions, logger);
  routes(router);
  const handlers = new Map(router.handlers.map((handler) => [handler.requestPath, withTypedProtocolErrors(handler, logger)]));
  return (request, response) => {
    const path = request.url?.split("?", 2)[0] ?? "";
    const grpcCall = "stream" in request ? grpcCalls.handlerFor(path, request) : undefined;
    if (grpcCall && "stream" in request) {
      grpcCall(universalRequestFromNodeRequest(request, response, undefined, undefined), response as http2.Http2ServerResponse).catch(
        (reason: unknown) => logger.error("request handler failed", { path, ...errorLogFields(reason) }),
      );
      closeOnceTrailersSubmitted(request);
      return;
    }
    const handler = handlers.get(path);
    if (!handler) {
      if (fallback) return fallback(request, response);
      response.writeHead(404);
      response.end();
      return;
    }
    handler(universalRequestFromNodeRequest(request, response, undefined, undefined))
      .then((universalResponse) => {
        if (!("stream" in request)) return universalResponseToNodeResponse(universalResponse, response);
        // Over HTTP/2, a response without trailer fields ends with END_STREAM on its message, written
        // to the stream itself; an unread request is reset only once that END_STREAM has left.
        if (endsWithoutTrailerFields(universalResponse)) {
          return writeStreamResponse(universalResponse, request.stream).then(() => {
            if (!request.readableEnded) resetOnceEndStreamSent(request.stream);
          });
        }
        // Once the trailers are submitted, not when the adapter's promise settles: that waits for the
        // stream to close, which an unread request never does.
        closeOnceTrailersSubmitted(request);
        return universalResponseToNodeResponse(universalResponse, response);
      })
      .catch((reason: unknown) => {
        if (isClientGone(reason)) {
          logger.debug?.("client went away", { path, ...errorLogFields(reason) });
          return;
        }
        logger.error("request handler failed", { path, ...errorLogFields(reason) });
      });
  };
}

/** Arranges {@link closeEndedStream} for just after Node submits the response's trailers (its own setImmediate on "wantTrailers"). */
function closeOnceTrailersSubmitted(request: http2.Http2ServerRequest): void {
  request.stream.once("wantTrailers", () => setImmediate(() => closeEndedStream(request)));
}

/**
 * Closes a gRPC response's stream once its trailers are submitted (see
 * {@link closeOnceTrailersSubmitted}). Closing makes Node flush at once: it
 * submits trailer fields from a setImmediate and sends them only at the
 * next turn's check phase, so a gRPC response's trailers left a whole
 * event-loop turn after its message. Under ten provider floods that turn
 * was milliseconds of SendInput's latency (issue 9). A HEADERS frame is not
 * flow-controlled, so the flush sends it before the reset: when the request
 * has ended the stream closes on that flush and no RST_STREAM follows; when
 * it is unread (an oversize message refused from its length prefix) the
 * NO_ERROR reset frees the client's window and the session's memory, as
 * RFC 9113 §8.1 allows after a complete response. Responses without trailer
 * fields never come here (http2-stream-response.ts); Node's HTTP/1.1 server
 * reads and discards an unread request itself, keeping the connection alive.
 */
function closeEndedStream(request: http2.Http2ServerRequest): void {
  const { stream } = request;
  if (stream.destroyed || stream.closed) return;
  const sentTrailerFields = Object.keys(stream.sentTrailers ?? {}).length > 0;
  if (sentTrailerFields) stream.close(http2.constants.NGHTTP2_NO_ERROR);
}

function listen(server: http.Server | http2.Http2Server | http2.Http2SecureServer, host: string, port: number): Promise<string> {
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

function closeServer(server: http.Server | http2.Http2Server | http2.Http2SecureServer): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

/** Whether a bound IP address is this machine's loopback (127.0.0.0/8, ::1, or 127.x mapped into IPv6). */
export function isLoopbackAddress(address: string): boolean {
  const ipv4 = address.startsWith("::ffff:") ? address.slice("::ffff:".length) : address;
  return address === "::1" || (isIPv4(ipv4) && ipv4.startsWith("127."));
}

/** Whether a listen host only accepts connections from this machine (by its name; see {@link isLoopbackAddress}). */
export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || host === "[::1]" || /^127\.\d+\.\d+\.\d+$/.test(host);
}
