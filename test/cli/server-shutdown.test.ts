import { describe, expect, it } from "vitest";
import { createRuntime } from "../../src/runtime/index.js";
import { createPinoLogger } from "../../src/cli/pino-logger.js";
import { closeForShutdown } from "../../src/cli/server-shutdown.js";
import { startRuntimeServer } from "../../src/server/index.js";
import { logCapture } from "../support/log-lines.js";

/**
 * The outcome `serve` and `backend` exit with (test/cli/shutdown.test.ts
 * shows a lossy drain through a real process): a close that throws is
 * failed too, whatever threw it, and whatever is closed after it still is.
 */
describe("closeForShutdown", () => {
  it("is clean for a real server's clean close, and failed (logged, later parts still closed) when a close throws", async () => {
    const capture = logCapture();
    const logger = createPinoLogger({ level: "info", payloads: false, destination: capture.destination });
    const runtime = await createRuntime({});
    const server = await startRuntimeServer({ runtime, host: "127.0.0.1", port: 0, logger });
    let afterRan = 0;
    const after = () => {
      afterRan++;
    };
    expect(await closeForShutdown({ server, runtime, after, logger }, 0, new AbortController().signal)).toBe("clean");
    expect(capture.lines.filter((line) => line.level === "error")).toEqual([]);

    // A server whose close rejects (the runtime's store could not close): the process must not exit 0.
    const failing = { close: () => Promise.reject(new Error("store close failed")) };
    expect(await closeForShutdown({ server: failing, runtime, after, logger }, 0, new AbortController().signal)).toBe("failed");
    expect(afterRan).toBe(2);
    expect(capture.lines.find((line) => line.level === "error")?.message).toBe("shutdown failed");
  });
});
