import { describe, expect, it } from "vitest";
import { BackgroundWrites } from "../../src/runtime/background-write.js";
import type { Logger } from "../../src/runtime/index.js";

/** A logger whose every line throws, as a broken log destination might. */
const throwingLogger: Logger = {
  debug: () => {},
  info: () => {},
  warn: () => {},
  error: () => {
    throw new Error("the log destination is gone");
  },
};

describe("BackgroundWrites", () => {
  it("settles a failed write whose failure cannot be logged, and leaves no rejection behind", async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown): void => {
      unhandled.push(reason);
    };
    process.on("unhandledRejection", onUnhandled);
    try {
      const writes = new BackgroundWrites();
      writes.start(Promise.reject(new Error("EIO")), { logger: throwingLogger, message: "a write failed", fields: {} });
      await writes.settled();
      // Unhandled rejections are reported after the microtask queue drains: give them a turn.
      await new Promise((resolve) => setImmediate(resolve));
      expect(unhandled).toEqual([]);
    } finally {
      process.off("unhandledRejection", onUnhandled);
    }
  });
});
