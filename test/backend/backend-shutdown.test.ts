import { Http2SessionManager } from "@connectrpc/connect-node";
import { afterEach, describe, expect, it } from "vitest";
import { RuntimeHealth } from "../../gen/worker_runtime/v1/backend_pb.js";
import { createBackend } from "../../src/backend/index.js";
import { createRuntime, silentLogger } from "../../src/runtime/index.js";
import { startRuntimeServer } from "../../src/server/index.js";
import { clientsFor, eventually, type Harness, makeTransport, PROTOCOLS, startHarness } from "../support/harness.js";
import { ScriptedBackend } from "../support/scripted-backend.js";

/**
 * A Backend's shutdown: the watches it relays from remote runtimes end with
 * it. They are streams of the Backend's server that the embedded runtime's
 * close knows nothing of, so left open they held the server's close until
 * the forced close destroyed every session (2 s of every Backend
 * shutdown that had a console open, and a reset in place of an end). Here
 * the forced close is far beyond the hang guard: only the relayed watch
 * ending lets the close finish.
 */

const cleanups: (() => Promise<void>)[] = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe("a Backend's server closing", () => {
  for (const protocol of PROTOCOLS) {
    it(`ends the watches it relays from remote runtimes, so they do not hold its close (${protocol})`, async () => {
      const remote: Harness = await startHarness({ runtimeId: "rs", executionBackend: new ScriptedBackend() });
      cleanups.push(() => remote.close());
      const embedded = await createRuntime({ logger: silentLogger, runtimeId: "emb" });
      const backend = createBackend({ runtime: embedded, logger: silentLogger, remotes: [{ runtimeId: "rs", url: remote.baseUrl }] });
      cleanups.push(async () => backend.close());
      const server = await startRuntimeServer({
        runtime: embedded,
        routes: backend.routes,
        host: "127.0.0.1",
        port: 0,
        logger: silentLogger,
        closeTimeoutMs: 600_000,
      });
      const baseUrl = `http://${server.h2Address}`;
      const session = new Http2SessionManager(baseUrl);
      const abort = new AbortController();
      cleanups.push(async () => {
        abort.abort();
        session.abort();
        await server.close(0);
      });
      await eventually(() => backend.directory.get("rs")?.health === RuntimeHealth.READY, 10_000, "READY");
      const clients = clientsFor(makeTransport(protocol, baseUrl, session));
      const { worker } = await clients.catalog.createWorker({ runtimeId: "rs" });
      const iterator = clients.observation.watchWorker({ worker: worker?.ref }, { signal: abort.signal })[Symbol.asyncIterator]();
      expect((await iterator.next()).done).toBe(false);
      const ended = (async () => {
        try {
          while (!(await iterator.next()).done);
          return "ended";
        } catch (error) {
          return error instanceof Error ? error.message : String(error);
        }
      })();

      let hangGuard: NodeJS.Timeout | undefined;
      const hung = new Promise<"hung">((resolve) => (hangGuard = setTimeout(() => resolve("hung"), 20_000)));
      try {
        expect(await Promise.race([server.close(0).then(() => "closed"), hung])).toBe("closed");
      } finally {
        clearTimeout(hangGuard);
      }
      expect(await ended).toBe("ended");
    }, 40_000);
  }
});
