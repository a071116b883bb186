import { createHash } from "node:crypto";
import type { LookupFunction } from "node:net";
import { Code, ConnectError, type Interceptor, type Transport } from "@connectrpc/connect";
import { createFastGrpcTransport, GuardedSessionManager } from "../grpc-client/index.js";
import { createClientTracingInterceptor } from "../telemetry/tracing/index.js";
import { logFieldsOf, REQUEST_ID_HEADER } from "../server/index.js";

/** How to reach one remote Runtime. Credentials stay inside the Backend. */
export interface RemoteEndpoint {
  /** The URL as configured; user info, path and query are dropped. */
  url: string;
  /** Reads the bearer token now (file or environment), or undefined for none. */
  token?: () => string | undefined;
  /** PEM CA certificate(s) for an https URL. */
  ca?: string | Buffer;
  /** How the host name is resolved on each (re)connection (default: the system's, as for any socket). */
  lookup?: LookupFunction;
}

/** A transport to one remote Runtime over its own HTTP/2 connection. */
export interface RemoteTransport {
  transport: Transport;
  /** Re-reads the token (called before each connection attempt, so a fixed token file is picked up). */
  refreshToken(): void;
  /** Closes the HTTP/2 connection and every stream on it, and seals the transport (see {@link createRemoteTransport}). */
  close(): void;
}

/**
 * The caller's request id goes on to the Runtime, so one id finds a call in
 * both logs (and the Runtime's run lines carry it). A routed call passes the
 * served RPC's context values to its client, so the id is read from there.
 */
export const forwardRequestId: Interceptor = (next) => (request) => {
  const id = logFieldsOf(request.contextValues)?.["request_id"];
  if (id !== undefined && !request.header.has(REQUEST_ID_HEADER)) request.header.set(REQUEST_ID_HEADER, id);
  return next(request);
};

/** HTTP/2 keepalive: a PING every 10 s on a busy connection, 5 s to answer, else it closes. */
const PING_INTERVAL_MS = 10_000;
const PING_TIMEOUT_MS = 5_000;

/**
 * The scheme, host and port of a Runtime URL: the only part the Backend
 * connects to, logs or returns (user info would be a credential).
 */
export function endpointOf(url: string): string {
  const parsed = new URL(url);
  return `${parsed.protocol}//${parsed.host}`;
}

/**
 * What a remote route is made of (address, token, CA) as one comparable
 * string, the secrets hashed so the key never holds them: an UpdateRuntime
 * that changes nothing keeps the connection it would otherwise tear down.
 */
export function routeKeyOf(endpoint: RemoteEndpoint): string {
  const parts = [endpointOf(endpoint.url), endpoint.token?.() ?? "", String(endpoint.ca ?? "")];
  return createHash("sha256").update(JSON.stringify(parts)).digest("hex");
}

/** `server.address` and `server.port` of a Runtime's base URL (the scheme's port when none is written). */
function serverOf(baseUrl: string): { serverAddress: string; serverPort: number } {
  const url = new URL(baseUrl);
  const port = url.port !== "" ? Number(url.port) : url.protocol === "https:" ? 443 : 80;
  return { serverAddress: url.hostname.replace(/^\[(.*)\]$/, "$1"), serverPort: port };
}

/**
 * gRPC over one HTTP/2 connection per Runtime, with its own session manager
 * (so one Runtime's connection problems never touch another's), keepalive
 * pings, the bearer token added to every call, and a client span per call
 * carrying the trace context to the Runtime. Watch streams are read by the
 * fast gRPC reader (src/grpc-client), since the Backend relays every event
 * of every watched Runtime. Once closed (its Runtime re-pointed or removed)
 * the transport is sealed: a later call is refused at once with
 * UNAVAILABLE rather than the session manager dialling the old address
 * again, so nothing can reach a route the Backend has left.
 */
export function createRemoteTransport(endpoint: RemoteEndpoint, interceptors: readonly Interceptor[] = []): RemoteTransport {
  const baseUrl = endpointOf(endpoint.url);
  const sessionManager = new GuardedSessionManager(
    baseUrl,
    { pingIntervalMs: PING_INTERVAL_MS, pingTimeoutMs: PING_TIMEOUT_MS, pingIdleConnection: true },
    { ...(endpoint.ca !== undefined ? { ca: endpoint.ca } : {}), ...(endpoint.lookup ? { lookup: endpoint.lookup } : {}) },
  );
  let token = endpoint.token?.();
  const bearer: Interceptor = (next) => (request) => {
    if (token !== undefined) request.header.set("authorization", `Bearer ${token}`);
    return next(request);
  };
  const tracing = createClientTracingInterceptor({ rpcSystem: "grpc", ...serverOf(baseUrl) });
  let closed = false;
  const sealed: Interceptor = (next) => (request) => {
    if (closed) throw new ConnectError("the runtime's route was closed (re-pointed or removed)", Code.Unavailable);
    return next(request);
  };
  const transport = createFastGrpcTransport({
    baseUrl,
    sessionManager,
    // Innermost, so that a retry made by an outer interceptor is refused too.
    interceptors: [tracing, ...interceptors, bearer, forwardRequestId, sealed],
  });
  return {
    transport,
    refreshToken: () => {
      token = endpoint.token?.();
    },
    close: () => {
      closed = true;
      sessionManager.abort();
    },
  };
}
