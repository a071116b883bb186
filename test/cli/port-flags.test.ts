import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { REPO_ROOT, startCli } from "../support/cli-process.js";

/**
 * A bad port is a usage error that ends the process: checked before the
 * runtime opens its data dir or the metrics listener starts, which would
 * otherwise keep the process alive (and the data dir locked) after the
 * message. Under `npm start` the message names the flag the user typed.
 */

const dirs: string[] = [];

afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function dataDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), "wr-port-flags-"));
  dirs.push(dir);
  return dir;
}

/** `npm start`'s entry from source. */
const START_ENTRY = { nodeArgs: ["--import", "tsx", "src/console/start.ts"], cwd: REPO_ROOT };

async function expectUsageExit(args: readonly string[], message: string, entry?: typeof START_ENTRY): Promise<void> {
  const cli = startCli(args, {}, entry);
  // Only a guard against a process that never exits; a cold tsx start under a loaded CI machine can take 20 s.
  const timer = setTimeout(() => cli.kill(), 50_000);
  try {
    const exit = await cli.exited;
    expect(cli.stderr()).toBe(`worker-runtime: ${message}\n`);
    expect(exit, "exits by itself, with the usage code").toEqual({ code: 2, signal: null });
  } finally {
    clearTimeout(timer);
    cli.kill();
  }
}

describe("bad ports stop start-up", () => {
  it("backend with a data dir", async () => {
    await expectUsageExit(
      ["backend", "--port", "0", "--http1-port", "x", "--data-dir", dataDir()],
      "--http1-port must be a port number 0-65535",
    );
  });

  it("serve with metrics on", async () => {
    await expectUsageExit(
      ["serve", "--port", "0", "--http1-port", "x", "--metrics-port", "0"],
      "--http1-port must be a port number 0-65535",
    );
  });

  it("npm start, naming its own flags", async () => {
    await expectUsageExit(["--port", "abc", "--data-dir", dataDir()], "--port must be a port number 0-65535", START_ENTRY);
    await expectUsageExit(["--grpc-port=99999", "--data-dir", dataDir()], "--grpc-port must be a port number 0-65535", START_ENTRY);
  });
});

describe("npm start --help", () => {
  it("says what --port and --grpc-port mean under npm start before the backend's flags", async () => {
    const cli = startCli(["--help"], {}, START_ENTRY);
    expect(await cli.exited).toEqual({ code: 0, signal: null });
    const [first, second] = cli.stdout().split("\n");
    expect(first).toBe("usage: npm start -- [--port 8080] [--grpc-port 7080] [--data-dir data] [backend flags]");
    expect(second).toContain("--port is the console's HTTP/1.1 port");
    expect(cli.stdout()).toContain("usage: worker-runtime backend");
  });
});
