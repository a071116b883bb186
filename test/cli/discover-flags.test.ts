import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { startCli } from "../support/cli-process.js";
import { fifoAt, HUGE_FILE_BYTES, sparseFileAt } from "../support/unreadable-files.js";

/** A FIFO (it would hold start-up until written to) and a sparse file past every bound (it would be read whole). */
const dir = mkdtempSync(join(tmpdir(), "backend-files-"));
const fifo = fifoAt(join(dir, "pipe"));
const huge = sparseFileAt(join(dir, "huge"), HUGE_FILE_BYTES);

afterAll(() => rmSync(dir, { recursive: true, force: true }));

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
    [["--discover-dns", "_grpc._tcp.runtimes", "--discover-token-file", fifo], `--discover-token-file ${fifo} is not a regular file`],
    [
      ["--discover-dns", "_grpc._tcp.runtimes", "--discover-token-file", huge],
      `--discover-token-file ${huge} is ${HUGE_FILE_BYTES} bytes; at most 65536 allowed`,
    ],
    [["--config", fifo], `--config ${fifo} is not a regular file`],
    [["--config", huge], `--config ${huge} is ${HUGE_FILE_BYTES} bytes; at most 1048576 allowed`],
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
