import { create } from "@bufbuild/protobuf";
import { ConnectError } from "@connectrpc/connect";
import { Http2SessionManager } from "@connectrpc/connect-node";
import { afterEach, describe, expect, it } from "vitest";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { CreateWorkerRequestSchema } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { createBackend, type Backend } from "../../src/backend/index.js";
import { createRuntime, silentLogger } from "../../src/runtime/index.js";
import { startRuntimeServer, type RuntimeServer } from "../../src/server/index.js";
import { clientsFor, makeTransport } from "../support/harness.js";

/**
 * A Backend shutting down ends the watches it relays from its embedded
 * Runtime (WatchWorker and WatchRuntime, each served from a shared upstream
 * watch) as that Runtime ends its own watches when it closes: cleanly. The
 * relay used to take the embedded Runtime's clean end for a restart to ride
 * out, and held the stream open with heartbeats until the server destroyed
 * the connection after its close timeout: the client saw a cut connection.
 * A real server on 127.0.0.1, the generated client over HTTP/2.
 */
let backend: Backend | undefined;
let server: RuntimeServer | undefined;
const sessions: Http2SessionManager[] = [];

afterEach(async () => {
  backend?.close();
  await server?.close(0);
  for (const session of sessions.splice(0)) session.abort();
});

/** How a stream ended, read to its end. */
async function endOf(stream: AsyncIterator<unknown>): Promise<string> {
  try {
    while (!(await stream.next()).done);
    return "ended cleanly";
  } catch (error) {
    return `failed: ${ConnectError.from(error).message}`;
  }
}

describe("Backend shutdown with relayed watches of its embedded Runtime", () => {
  for (const protocol of ["grpc", "connect"] as const) {
    it(`ends WatchWorker and WatchRuntime cleanly, as the Runtime's own watches end (${protocol})`, async () => {
      const runtime = await createRuntime({ logger: silentLogger, runtimeId: "emb" });
      backend = createBackend({ runtime, logger: silentLogger, heartbeatMs: 100 });
      server = await startRuntimeServer({ runtime, routes: backend.routes, host: "127.0.0.1", port: 0, logger: silentLogger });
      const created = await runtime.createWorker(create(CreateWorkerRequestSchema, { runtimeId: "emb" }));
      const session = new Http2SessionManager(`http://${server.h2Address}`);
      sessions.push(session);
      const client = clientsFor(makeTransport(protocol, `http://${server.h2Address}`, session));
      const workerWatch = client.observation.watchWorker({ worker: created.worker?.ref as WorkerRef })[Symbol.asyncIterator]();
      expect((await workerWatch.next()).value?.snapshot).toBeDefined();
      // Served from the worker's shared upstream watch.
      expect(backend.workerWatch("emb", created.worker?.ref?.workerId ?? "")?.readerCount).toBe(1);
      const runtimeWatch = client.observation.watchRuntime({ runtimeId: "emb" })[Symbol.asyncIterator]();
      expect((await runtimeWatch.next()).value?.snapshot).toBeDefined();

      const closing = server.close(0);
      const ended = await Promise.all([endOf(workerWatch), endOf(runtimeWatch)]);
      await closing;
      expect(ended).toEqual(["ended cleanly", "ended cleanly"]);
    }, 15_000);
  }
});
