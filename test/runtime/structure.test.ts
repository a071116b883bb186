import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

/**
 * The core stays easy to see and to change: the facade and the session stay
 * small (test/class-size.test.ts keeps every class in src/ small too).
 */

const RUNTIME_DIR = fileURLToPath(new URL("../../src/runtime/", import.meta.url));
const MAX_LINES = 300;

describe("the core's shape", () => {
  it.each(["runtime.ts", "worker-session.ts"])("keeps %s under 300 lines", (name) => {
    const lines = readFileSync(path.join(RUNTIME_DIR, name), "utf8").split("\n").length;
    expect(lines).toBeLessThan(MAX_LINES);
  });
});
