import { createConnectTransport, type Http2SessionManager } from "@connectrpc/connect-node";
import { RuntimeHealth } from "../../gen/worker_runtime/v1/backend_pb.js";
import { type Backend, type BackendOptions, createBackend } from "../../src/backend/index.js";
import { type Runtime, silentLogger } from "../../src/runtime/index.js";
import { type RuntimeServer, type RuntimeServerOptions, startRuntimeServer } from "../../src/server/index.js";
import { type Clients, clientsAt, clientsFor, eventually, type Protocol } from "./harness.js";

/** What {@link startBackendWithRemote} serves, and how. */
export interface BackendWithRemoteInit {
  /** The Backend's embedded runtime; the Backend's server serves it with the Backend's routes. */
  embedded: Runtime;
  /** The remote runtime, on a server of its own; the Backend registers it under its own runtime id. */
  remote: Runtime;
  /** The remote server's logger and interceptors (default: silent, none), e.g. to record or stall its RPCs. */
  remoteServer?: Partial<Pick<RuntimeServerOptions, "logger" | "interceptors">>;
  /** Backend options beyond its runtimes and logger, e.g. a short heartbeat and backoff. */
  backend?: Omit<BackendOptions, "runtime" | "remotes" | "logger">;
  /** The bearer token the remote's server requires, and the Backend is given for it (default: none). */
  remoteToken?: string;
  /** The URL the Backend reaches the remote at, from its server's h2c address (default `http://<address>`), e.g. a proxy's. */
  remoteUrl?: (address: string) => string | Promise<string>;
}

/** A Backend over an embedded and a remote runtime, each served on 127.0.0.1, and clients of both. */
export interface BackendWithRemote {
  readonly backend: Backend;
  /** The Backend's server: its routes on an h2c port and an HTTP/1.1 port (the console's). */
  readonly backendServer: RuntimeServer;
  /** The remote runtime's own server (a new one after {@link BackendWithRemote.restartRemote}). */
  readonly remoteServer: RuntimeServer;
  /** Clients of the Backend over a new HTTP/2 session. */
  clients(protocol: Protocol): Clients;
  /** Clients of the remote runtime's own server, as a client calling it directly has them. */
  remoteClients(protocol: Protocol): Clients;
  /** Clients of the Backend over the console's transport: Connect, binary, over HTTP/1.1. */
  consoleClients(): Clients;
  /**
   * A restart of the remote: closes its server (and runtime), then serves
   * the runtime `open` returns (its store reopened) on the same port with the same options.
   */
  restartRemote(open: () => Promise<Runtime>): Promise<void>;
  /** Aborts every client session, closes the Backend, then the Backend's server and the remote's. */
  close(): Promise<void>;
}

/**
 * Starts a Backend as the tests that compare a remote runtime with the
 * embedded one need it, instead of each wiring its own copy: the remote
 * runtime on a server of its own on 127.0.0.1 port 0, the Backend's routes
 * over the embedded runtime on another (h2c and HTTP/1.1, port 0), and
 * resolves once the Backend has the remote READY. `close()` aborts the
 * clients' sessions, closes the Backend, then the Backend's server and the
 * remote's, each closing its runtime; servers and proxies a test starts
 * itself stay the test's to close.
 */
export async function startBackendWithRemote(init: BackendWithRemoteInit): Promise<BackendWithRemote> {
  const remoteId = init.remote.runtimeId;
  const serveRemote = (runtime: Runtime, port: number) =>
    startRuntimeServer({
      logger: silentLogger,
      ...init.remoteServer,
      ...(init.remoteToken !== undefined ? { token: init.remoteToken } : {}),
      runtime,
      host: "127.0.0.1",
      port,
    });
  let remoteServer = await serveRemote(init.remote, 0);
  const url = init.remoteUrl ? await init.remoteUrl(remoteServer.h2Address) : `http://${remoteServer.h2Address}`;
  const token = init.remoteToken;
  const backend = createBackend({
    ...init.backend,
    runtime: init.embedded,
    logger: silentLogger,
    remotes: [{ runtimeId: remoteId, url, ...(token !== undefined ? { token: () => token } : {}) }],
  });
  const backendServer = await startRuntimeServer({
    runtime: init.embedded,
    routes: backend.routes,
    host: "127.0.0.1",
    port: 0,
    http1Port: 0,
    logger: silentLogger,
  });
  const sessions: Http2SessionManager[] = [];
  const started: BackendWithRemote = {
    backend,
    backendServer,
    get remoteServer() {
      return remoteServer;
    },
    clients: (protocol) => clientsAt(backendServer.h2Address, protocol, sessions),
    remoteClients: (protocol) => clientsAt(remoteServer.h2Address, protocol, sessions),
    consoleClients: () =>
      clientsFor(createConnectTransport({ baseUrl: `http://${backendServer.http1Address}`, httpVersion: "1.1", useBinaryFormat: true })),
    async restartRemote(open) {
      const port = Number(remoteServer.h2Address.split(":").pop());
      await remoteServer.close(0);
      remoteServer = await serveRemote(await open(), port);
    },
    async close() {
      for (const session of sessions.splice(0)) session.abort();
      backend.close();
      await backendServer.close(0);
      await remoteServer.close(0);
    },
  };
  try {
    await eventually(() => backend.directory.get(remoteId)?.health === RuntimeHealth.READY, 10_000, `${remoteId} READY`);
  } catch (error) {
    await started.close();
    throw error;
  }
  return started;
}
