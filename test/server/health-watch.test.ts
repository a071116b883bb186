import { createClient, createRouterTransport } from "@connectrpc/connect";
import { Http2SessionManager } from "@connectrpc/connect-node";
import { describe, expect, it } from "vitest";
import {
  Health,
  HealthCheckResponse_ServingStatus as ServingStatus,
  type HealthCheckResponse,
} from "../../gen/grpc/health/v1/health_pb.js";
import { createRuntime, silentLogger } from "../../src/runtime/index.js";
import { createErrorInterceptor, createRoutes, startRuntimeServer } from "../../src/server/index.js";
import { clientsFor, makeTransport, PROTOCOLS, startHarness } from "../support/harness.js";
import { ScriptedBackend } from "../support/scripted-backend.js";

/**
 * grpc.health.v1.Health/Watch must report every change, including one made
 * while the handler is parked at `yield` (its last message not yet taken by
 * the transport): a lost NOT_SERVING keeps a draining runtime in rotation.
 * Over a socket that window is a few microseconds wide; the in-memory
 * transport hands messages over only when the reader asks, which holds the
 * handler at its yield and makes the race deterministic.
 */

/** The next message, or "none" if nothing comes within `ms`. */
async function nextWithin(iterator: AsyncIterator<HealthCheckResponse>, ms: number): Promise<ServingStatus | "none"> {
  let timer: NodeJS.Timeout | undefined;
  const none = new Promise<"none">((resolve) => (timer = setTimeout(() => resolve("none"), ms)));
  const next = iterator.next().then((result) => (result.done ? ("none" as const) : result.value.status));
  try {
    return await Promise.race([next, none]);
  } finally {
    clearTimeout(timer);
  }
}

describe("Health/Watch", () => {
  it("reports a drain that happens while the stream waits for its reader (in-memory transport)", async () => {
    const runtime = await createRuntime({ executionBackend: new ScriptedBackend(), logger: silentLogger });
    const transport = createRouterTransport(createRoutes(runtime), {
      router: { interceptors: [createErrorInterceptor(silentLogger)] },
    });
    const health = createClient(Health, transport);
    const abort = new AbortController();
    const iterator = health.watch({}, { signal: abort.signal })[Symbol.asyncIterator]();
    try {
      expect(await nextWithin(iterator, 5_000)).toBe(ServingStatus.SERVING);
      // The reader has not asked for more: the handler sits at its yield.
      await runtime.drain(0);
      expect(await nextWithin(iterator, 5_000)).toBe(ServingStatus.NOT_SERVING);
    } finally {
      abort.abort();
      await runtime.close();
    }
  });

  // The gRPC health protocol: Watch on a service the server does not know sends SERVICE_UNKNOWN and
  // keeps the stream open (the service may be registered later), rather than ending the call.
  it("answers SERVICE_UNKNOWN for an unknown service and keeps the stream open until the server closes", async () => {
    const runtime = await createRuntime({ executionBackend: new ScriptedBackend(), logger: silentLogger });
    const server = await startRuntimeServer({ runtime, host: "127.0.0.1", port: 0, logger: silentLogger });
    const baseUrl = `http://${server.h2Address}`;
    const session = new Http2SessionManager(baseUrl);
    const abort = new AbortController();
    const order: string[] = [];
    try {
      const health = clientsFor(makeTransport("grpc", baseUrl, session)).health;
      const iterator = health.watch({ service: "no.such.Service" }, { signal: abort.signal })[Symbol.asyncIterator]();
      expect(await nextWithin(iterator, 5_000)).toBe(ServingStatus.SERVICE_UNKNOWN);
      const ended = iterator.next().then(
        (result) => order.push(result.done ? "ended" : "message"),
        () => order.push("failed"),
      );
      // A round trip on the same connection: a stream that ends after its first message has ended by now.
      expect((await health.check({})).status).toBe(ServingStatus.SERVING);
      order.push("checked");
      await server.close(0);
      await ended;
      // Nothing more was sent, and the close ended the stream cleanly.
      expect(order).toEqual(["checked", "ended"]);
    } finally {
      abort.abort();
      session.abort();
      await server.close(0);
    }
  });

  for (const protocol of PROTOCOLS) {
    it(`reports NOT_SERVING after drain over a real server (${protocol})`, async () => {
      const harness = await startHarness({ executionBackend: new ScriptedBackend() });
      const abort = new AbortController();
      try {
        const iterator = harness.connect(protocol).health.watch({}, { signal: abort.signal })[Symbol.asyncIterator]();
        expect(await nextWithin(iterator, 5_000)).toBe(ServingStatus.SERVING);
        await harness.runtime.drain(0);
        expect(await nextWithin(iterator, 5_000)).toBe(ServingStatus.NOT_SERVING);
      } finally {
        abort.abort();
        await harness.close();
      }
    });
  }

  for (const protocol of PROTOCOLS) {
    // A Backend keeps a Watch open on every runtime it routes to. Left open, it held the server's close
    // until the forced close cut it (2 s of every shutdown, and a reset in place of an end); here the
    // forced close is far beyond the hang guard, so only the stream ending lets the close finish.
    it(`ends when the server closes, so an open watch does not hold the shutdown (${protocol})`, async () => {
      const runtime = await createRuntime({ executionBackend: new ScriptedBackend(), logger: silentLogger });
      const server = await startRuntimeServer({ runtime, host: "127.0.0.1", port: 0, logger: silentLogger, closeTimeoutMs: 600_000 });
      const baseUrl = `http://${server.h2Address}`;
      const session = new Http2SessionManager(baseUrl);
      const abort = new AbortController();
      let hangGuard: NodeJS.Timeout | undefined;
      try {
        const health = clientsFor(makeTransport(protocol, baseUrl, session)).health;
        const iterator = health.watch({}, { signal: abort.signal })[Symbol.asyncIterator]();
        expect(await nextWithin(iterator, 5_000)).toBe(ServingStatus.SERVING);
        const rest = (async () => {
          const statuses: ServingStatus[] = [];
          for (let next = await iterator.next(); !next.done; next = await iterator.next()) statuses.push(next.value.status);
          return statuses;
        })();
        const hung = new Promise<"hung">((resolve) => (hangGuard = setTimeout(() => resolve("hung"), 20_000)));
        expect(await Promise.race([server.close(0).then(() => "closed"), hung])).toBe("closed");
        // A clean end after the drain's NOT_SERVING, not an error.
        expect(await rest).toEqual([ServingStatus.NOT_SERVING]);
      } finally {
        clearTimeout(hangGuard);
        abort.abort();
        session.abort();
        await server.close(0);
      }
    }, 30_000);
  }
});
