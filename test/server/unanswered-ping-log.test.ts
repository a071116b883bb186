import { Http2SessionManager } from "@connectrpc/connect-node";
import { afterEach, describe, expect, it } from "vitest";
import { createRuntime, type Logger, type Runtime } from "../../src/runtime/index.js";
import { type RuntimeServer, startRuntimeServer } from "../../src/server/index.js";
import { createUnansweredPingLog } from "../../src/server/unanswered-ping-log.js";
import { type CuttableProxy, startCuttableProxy } from "../support/cuttable-proxy.js";
import { clientsFor, eventually, makeTransport } from "../support/harness.js";
import { recordingLogger } from "../support/recording-logger.js";

/**
 * Connections reaped for an unanswered ping are logged in bounded volume:
 * anyone can open idle sockets without a token, and 2,000 of them once made
 * 2,000 warn lines. Each reap is a debug line; warns are at most one at once
 * and one aggregate per window; the last window's aggregate is written when
 * the server shuts down, not lost with the process.
 */

function debugRecordingLogger(): Logger & { lines: { level: string; message: string; fields?: Record<string, unknown> }[] } {
  const lines: { level: string; message: string; fields?: Record<string, unknown> }[] = [];
  const at = (level: string) => (message: string, fields?: Record<string, unknown>) => {
    lines.push({ level, message, ...(fields ? { fields } : {}) });
  };
  return { lines, debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") };
}

describe("the unanswered-ping log", () => {
  it("2,000 reaps in one window: one warn at once, 2,000 debug lines, one aggregate warn with the count after", async () => {
    const logger = debugRecordingLogger();
    const { reaped } = createUnansweredPingLog(logger, 200);
    for (let i = 0; i < 2000; i++) reaped({ remote_address: "127.0.0.1", remote_port: 40_000 + i, timeout_ms: 20_000 });
    const warns = () => logger.lines.filter((line) => line.level === "warn");
    expect(warns()).toHaveLength(1);
    expect(warns()[0]?.message).toBe("closing an HTTP/2 connection whose peer did not answer a ping");
    expect(logger.lines.filter((line) => line.level === "debug")).toHaveLength(2000);
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(warns()).toHaveLength(2);
    expect(warns()[1]).toMatchObject({
      message: "closed more HTTP/2 connections whose peers did not answer a ping",
      fields: { count: 1999, window_ms: 200 },
    });
    // A new window starts over: its first reap warns at once again.
    reaped({ remote_address: "127.0.0.1", remote_port: 1, timeout_ms: 20_000 });
    expect(warns()).toHaveLength(3);
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(warns()).toHaveLength(3);
  });
});

describe("the unanswered-ping log at shutdown", () => {
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

  it("writes the last window's count when the server closes, before the window ends", async () => {
    const logger = recordingLogger();
    runtime = await createRuntime({ logger });
    server = await startRuntimeServer({ runtime, host: "127.0.0.1", port: 0, logger, keepalive: { intervalMs: 100, timeoutMs: 400 } });
    proxy = await startCuttableProxy(server.h2Address);
    // Three connections through the proxy, each opened by a call, then all three stop answering.
    for (let i = 0; i < 3; i++) {
      const session = new Http2SessionManager(proxy.url.replace(/\/$/, ""));
      sessions.push(session);
      await clientsFor(makeTransport("grpc", proxy.url.replace(/\/$/, ""), session)).management.getRuntime({});
    }
    proxy.freeze();
    await eventually(() => proxy?.closedByTarget === 3, 10_000, "the server to close the three silent connections");
    const warns = () => logger.lines.filter((line) => line.level === "warn");
    // The first at once; the other two wait for the window's end (60 s), which the shutdown comes before.
    expect(warns().map((line) => line.message)).toEqual(["closing an HTTP/2 connection whose peer did not answer a ping"]);
    await server.close(0);
    expect(warns()[1]).toMatchObject({
      message: "closed more HTTP/2 connections whose peers did not answer a ping",
      fields: { count: 2, window_ms: 60_000 },
    });
    expect(warns()).toHaveLength(2);
  }, 30_000);
});
