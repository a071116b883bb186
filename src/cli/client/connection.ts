import type { Client, Interceptor, Transport } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-node";
import { createClient, createFastGrpcTransport, GuardedSessionManager } from "../../grpc-client/index.js";
import { RuntimeManagement } from "../../../gen/worker_runtime/v1/runtime_management_pb.js";
import { WorkerCatalog } from "../../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { WorkerInteraction } from "../../../gen/worker_runtime/v1/worker_interaction_pb.js";
import { WorkerObservation } from "../../../gen/worker_runtime/v1/worker_observation_pb.js";

/** The generated clients of the four services, over one transport. */
export interface ServiceClients {
  management: Client<typeof RuntimeManagement>;
  catalog: Client<typeof WorkerCatalog>;
  interaction: Client<typeof WorkerInteraction>;
  observation: Client<typeof WorkerObservation>;
}

/** How to reach a runtime or a Backend. */
export interface ConnectionOptions {
  /** Base URL: http://host:port (h2c) or https://host:port. */
  server: string;
  /** Bearer token, sent on every call. */
  token: string | undefined;
  /** gRPC (the default) or the Connect protocol; both run over HTTP/2. */
  protocol: "grpc" | "connect";
}

/** An open connection; close it so the process can exit at once. */
export interface Connection {
  readonly transport: Transport;
  readonly clients: ServiceClients;
  close(): void;
}

/**
 * Opens a connection the way any TypeScript application would: one
 * HTTP/2 session (kept explicitly so it can be closed), a transport from
 * @connectrpc/connect-node (for gRPC, with watch streams read by the fast
 * reader in src/grpc-client), and `createClient` per generated service (also
 * src/grpc-client's: connect's, with leaner server streams). The
 * same clients talk to a runtime or to a Backend, which serves the same
 * services routed by runtime_id.
 */
export function openConnection(options: ConnectionOptions): Connection {
  // Pings notice a server that vanished without closing the connection.
  const sessionManager = new GuardedSessionManager(options.server, { pingIntervalMs: 15_000, pingTimeoutMs: 10_000 });
  const interceptors: Interceptor[] = [];
  const token = options.token;
  if (token !== undefined) {
    interceptors.push((next) => async (request) => {
      request.header.set("authorization", `Bearer ${token}`);
      return next(request);
    });
  }
  const init = { baseUrl: options.server, httpVersion: "2" as const, sessionManager, interceptors };
  const transport = options.protocol === "connect" ? createConnectTransport(init) : createFastGrpcTransport(init);
  return {
    transport,
    clients: {
      management: createClient(RuntimeManagement, transport),
      catalog: createClient(WorkerCatalog, transport),
      interaction: createClient(WorkerInteraction, transport),
      observation: createClient(WorkerObservation, transport),
    },
    close: () => sessionManager.abort(),
  };
}
