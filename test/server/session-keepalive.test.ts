import { ConnectError } from "@connectrpc/connect";
import { Http2SessionManager } from "@connectrpc/connect-node";
import { afterEach, describe, expect, it } from "vitest";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { createRuntime, type Runtime } from "../../src/runtime/index.js";
import { type RuntimeServer, startRuntimeServer } from "../../src/server/index.js";
import { type CuttableProxy, startCuttableProxy } from "../support/cuttable-proxy.js";
import { follow } from "../support/followed-stream.js";
import { clientsFor, eventually, makeTransport } from "../support/harness.js";
import { recordingLogger } from "../support/recording-logger.js";

/**
 * A client that vanishes without closing its connection (no FIN: a NAT that
 * forgot the flow, a machine switched off) used to keep its streams, and
 * what they hold on the runtime, until TCP gave up on the heartbeats'
 * retransmissions (about a quarter of an hour). The server pings every
 * HTTP/2 connection and closes one whose peer does not answer in time;
 * a live client answers the pings itself and keeps its streams.
 * A real server, the generated clients over HTTP/2, one of them through a
 * TCP proxy that stops forwarding without closing anything.
 */
let runtime: Runtime | undefined;
let server: RuntimeServer | undefined;
let proxy: CuttableProxy | undefined;
const sessions: Http2SessionManager[] = [];
afterEach(async () => {
  for (const session of sessions.splice(0)) session.abort();
  await proxy?.close();
  await server?.close(0);
  await runtime?.close();
});

function clientsAt(baseUrl: string) {
  const session = new Http2SessionManager(baseUrl);
  sessions.push(session);
  return clientsFor(makeTransport("grpc", baseUrl, session));
}

describe("HTTP/2 keepalive on the server", () => {
  it("closes a connection whose peer stopped answering, and keeps one that answers", async () => {
    const logger = recordingLogger();
    runtime = await createRuntime({ logger });
    server = await startRuntimeServer({ runtime, host: "127.0.0.1", port: 0, logger, keepalive: { intervalMs: 100, timeoutMs: 400 } });
    const direct = clientsAt(`http://${server.h2Address}`);
    const worker = (await direct.catalog.createWorker({ runtimeId: runtime.runtimeId })).worker?.ref as WorkerRef;
    proxy = await startCuttableProxy(server.h2Address);
    const proxied = clientsAt(proxy.url.replace(/\/$/, ""));

    const vanishing = follow(proxied.observation.watchWorker({ worker }));
    const live = follow(direct.observation.watchWorker({ worker }));
    // Both streams are open on the server, and pings are answered for a while.
    await proxied.catalog.getWorker({ worker });
    await new Promise((resolve) => setTimeout(resolve, 600));
    expect(proxy.closedByTarget).toBe(0);

    proxy.freeze();
    await eventually(() => proxy?.closedByTarget === 1, 10_000, "the server to close the silent connection");
    expect(logger.lines.map((line) => [line.level, line.message])).toContainEqual([
      "warn",
      "closing an HTTP/2 connection whose peer did not answer a ping",
    ]);
    // The live client's stream is still open: its pings are answered by its HTTP/2 stack.
    const stillOpen = await Promise.race([live.ended, new Promise((resolve) => setTimeout(() => resolve("open"), 800))]);
    expect(stillOpen).toBe("open");
    // The vanished client, once it hears of it (here: the proxy closes its side too), sees its stream fail, never end cleanly.
    expect(await vanishing.ended).toBeInstanceOf(ConnectError);
  }, 30_000);
});
