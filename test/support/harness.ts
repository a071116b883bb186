import { createClient, type Client, type Interceptor, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { RuntimeManagement } from "../../gen/worker_runtime/v1/runtime_management_pb.js";
import { WorkerCatalog } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { WorkerInteraction } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import { WorkerObservation } from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import { Health } from "../../gen/grpc/health/v1/health_pb.js";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { type Run, RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { createRuntime, type Runtime, type RuntimeOptions } from "../../src/runtime/index.js";
import { startRuntimeServer, type RuntimeServer } from "../../src/server/index.js";
import { silentLogger } from "../../src/runtime/index.js";

/** Wire protocols the tests exercise. */
export type Protocol = "grpc" | "connect";
export const PROTOCOLS: readonly Protocol[] = ["grpc", "connect"];

/** Generated clients for every service. */
export interface Clients {
  management: Client<typeof RuntimeManagement>;
  catalog: Client<typeof WorkerCatalog>;
  interaction: Client<typeof WorkerInteraction>;
  observation: Client<typeof WorkerObservation>;
  health: Client<typeof Health>;
}

/** A runtime served on 127.0.0.1 port 0, with clients over real HTTP/2. */
export interface Harness {
  runtime: Runtime;
  server: RuntimeServer;
  baseUrl: string;
  http1Url: string;
  /** Clients over the given protocol (each call makes a new HTTP/2 session). */
  connect(protocol: Protocol, headers?: Record<string, string>): Clients;
  /** Closes every client session, then the server. */
  close(): Promise<void>;
}

/** Options for {@link startHarness}. */
export interface HarnessOptions extends RuntimeOptions {
  token?: string;
  /** The server's HTTP/2 concurrent-stream limit per connection (its default without). */
  maxConcurrentStreams?: number;
  /** The server's interceptors (none without), e.g. to count the calls that reach it. */
  interceptors?: Interceptor[];
}

/** Starts a runtime server for a test. */
export async function startHarness(options: HarnessOptions = {}): Promise<Harness> {
  const { token, maxConcurrentStreams, interceptors, ...runtimeOptions } = options;
  const runtime = await createRuntime({ logger: silentLogger, ...runtimeOptions });
  const server = await startRuntimeServer({
    runtime,
    host: "127.0.0.1",
    port: 0,
    http1Port: 0,
    logger: silentLogger,
    ...(token !== undefined ? { token } : {}),
    ...(maxConcurrentStreams !== undefined ? { maxConcurrentStreams } : {}),
    ...(interceptors !== undefined ? { interceptors } : {}),
  });
  const baseUrl = `http://${server.h2Address}`;
  const sessions: Http2SessionManager[] = [];
  return {
    runtime,
    server,
    baseUrl,
    http1Url: `http://${server.http1Address}`,
    connect(protocol, headers) {
      const sessionManager = new Http2SessionManager(baseUrl);
      sessions.push(sessionManager);
      const transport = makeTransport(protocol, baseUrl, sessionManager, headers);
      return clientsFor(transport);
    },
    async close() {
      for (const session of sessions) session.abort();
      await server.close(0);
    },
  };
}

/**
 * Clients of the server at `address` (host:port) on a new HTTP/2 session,
 * added to `sessions` so the test can abort them all at its end.
 */
export function clientsAt(address: string, protocol: Protocol, sessions: Http2SessionManager[]): Clients {
  const baseUrl = `http://${address}`;
  const session = new Http2SessionManager(baseUrl);
  sessions.push(session);
  return clientsFor(makeTransport(protocol, baseUrl, session));
}

/** A transport over one explicit HTTP/2 session, so tests can close it. */
export function makeTransport(
  protocol: Protocol,
  baseUrl: string,
  sessionManager: Http2SessionManager,
  headers?: Record<string, string>,
): Transport {
  const addHeaders: Interceptor = (next) => async (request) => {
    for (const [key, value] of Object.entries(headers ?? {})) request.header.set(key, value);
    return next(request);
  };
  const interceptors = headers ? [addHeaders] : [];
  const common = { baseUrl, httpVersion: "2" as const, sessionManager, interceptors };
  return protocol === "grpc" ? createGrpcTransport(common) : createConnectTransport(common);
}

/** Clients for every service over one transport. */
export function clientsFor(transport: Transport): Clients {
  return {
    management: createClient(RuntimeManagement, transport),
    catalog: createClient(WorkerCatalog, transport),
    interaction: createClient(WorkerInteraction, transport),
    observation: createClient(WorkerObservation, transport),
    health: createClient(Health, transport),
  };
}

/** Polls `check` until it returns true or `timeoutMs` passes. */
export async function eventually(check: () => boolean | Promise<boolean>, timeoutMs = 5_000, what = "condition"): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Sends `text` to `worker`, polls GetRun until the run has ended (COMPLETED or later), and returns it. */
export async function runToEnd(clients: Clients, worker: WorkerRef, text: string): Promise<Run | undefined> {
  const { run } = await clients.interaction.sendInput({ worker, input: { text } });
  const runId = run?.runId ?? "";
  const read = async () => (await clients.interaction.getRun({ worker, runId })).run;
  await eventually(async () => ((await read())?.status ?? 0) >= RunStatus.COMPLETED, 15_000, `run ${runId} to end`);
  return read();
}
