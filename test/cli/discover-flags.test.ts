import { describe, expect, it } from "vitest";
import { startCli } from "../support/cli-process.js";

/** `backend --discover-*`: a bad value is a usage error (exit 2, a clear message) before anything listens. */
describe("backend --discover-* flags", () => {
  it.each([
    [["--discover-dns", "not a name!"], "--discover-dns must be a DNS name"],
    [["--discover-dns", "_grpc._tcp.runtimes", "--discover-interval-ms", "10"], "--discover-interval-ms must be"],
    [["--discover-dns", "_grpc._tcp.runtimes", "--discover-misses", "0"], "--discover-misses must be a whole number >= 1"],
    // Past a timer's range Node fires at once: lookups back to back, deadlines of 1 ms.
    [["--discover-dns", "_grpc._tcp.runtimes", "--discover-interval-ms", "3000000000"], "--discover-interval-ms must be"],
    [["--fanout-timeout-ms", "3000000000"], "--fanout-timeout-ms must be"],
    [["--discover-token-file", "runtime.token"], "--discover-token-file needs --discover-dns"],
    [
      ["--discover-dns", "_grpc._tcp.runtimes", "--discover-token-file", "/nonexistent/runtime.token"],
      "cannot read --discover-token-file: ENOENT",
    ],
  ])("refuses %j", async (args, message) => {
    const cli = startCli(["backend", "--port", "0", ...args]);
    try {
      expect((await cli.exited).code).toBe(2);
      expect(cli.stderr()).toContain(message);
      expect(cli.stdout()).not.toContain("listening");
    } finally {
      cli.kill();
    }
  });
});
