import { describe, expect, it } from "vitest";
import type { Logger } from "../../src/runtime/index.js";
import { createUnansweredPingLog } from "../../src/server/unanswered-ping-log.js";

/**
 * Connections reaped for an unanswered ping are logged in bounded volume:
 * anyone can open idle sockets without a token, and 2,000 of them once made
 * 2,000 warn lines. Each reap is a debug line; warns are at most one at once
 * and one aggregate per window.
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
    const reaped = createUnansweredPingLog(logger, 200);
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
