import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { REPO_ROOT, startCli } from "../support/cli-process.js";
import { runClient } from "./client/client-support.js";

/**
 * A bad port is a usage error that ends the process: checked before the
 * runtime opens its data dir or the metrics listener starts, which would
 * otherwise keep the process alive (and the data dir locked) after the
 * message. Under `npm start` the message names the flag the user typed.
 */

const dirs: string[] = [];
const listeners: net.Server[] = [];

afterAll(async () => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  await Promise.all(listeners.map((listener) => new Promise((resolve) => listener.close(resolve))));
});

/** A port another program holds on 127.0.0.1. */
async function takenPort(): Promise<number> {
  const listener = net.createServer();
  listeners.push(listener);
  await new Promise<void>((resolve) => listener.listen(0, "127.0.0.1", resolve));
  return (listener.address() as net.AddressInfo).port;
}

/** The one line a taken port gets, naming the flag that chose it. */
function inUse(port: number, flag: string): string {
  return `127.0.0.1:${port} (${flag}) is already in use by another program: stop it, or choose another port with ${flag}`;
}

function dataDir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), "wr-port-flags-"));
  dirs.push(dir);
  return dir;
}

/** `npm start`'s entry from source. */
const START_ENTRY = { nodeArgs: ["--import", "tsx", "src/console/start.ts"], cwd: REPO_ROOT };

/**
 * Runs the CLI to its exit and expects exit 2 with `message` as all it
 * printed on stderr, or, with `afterLogs`, as all beside the JSON log lines
 * of what had started (a Backend logs its runtime's health at once).
 */
async function expectUsageExit(args: readonly string[], message: string, entry?: typeof START_ENTRY, afterLogs = false): Promise<void> {
  const cli = startCli(args, {}, entry);
  // Only a guard against a process that never exits; a cold tsx start under a loaded CI machine can take 20 s.
  const timer = setTimeout(() => cli.kill(), 50_000);
  try {
    const exit = await cli.exited;
    const printed = afterLogs ? logLinesDropped(cli.stderr()) : cli.stderr();
    expect(printed).toBe(`worker-runtime: ${message}\n`);
    expect(exit, "exits by itself, with the usage code").toEqual({ code: 2, signal: null });
  } finally {
    clearTimeout(timer);
    cli.kill();
  }
}

/** stderr without its JSON log lines. */
function logLinesDropped(stderr: string): string {
  return stderr
    .split(/(?<=\n)/)
    .filter((line) => !line.startsWith("{"))
    .join("");
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

describe("a port another program holds: exit 2 and one line naming the flag", () => {
  it("serve: --port, --http1-port and --metrics-port", async () => {
    const port = await takenPort();
    await expectUsageExit(["serve", "--port", String(port)], inUse(port, "--port"));
    await expectUsageExit(["serve", "--port", "0", "--http1-port", String(port)], inUse(port, "--http1-port"));
    await expectUsageExit(["serve", "--port", "0", "--metrics-port", String(port)], inUse(port, "--metrics-port"));
  });

  it("backend with a data dir: --port and --http1-port", async () => {
    const port = await takenPort();
    await expectUsageExit(["backend", "--port", String(port), "--data-dir", dataDir()], inUse(port, "--port"), undefined, true);
    await expectUsageExit(
      ["backend", "--port", "0", "--http1-port", String(port), "--data-dir", dataDir()],
      inUse(port, "--http1-port"),
      undefined,
      true,
    );
  });

  it("npm start, naming its own flags (--port is the console's, --grpc-port the backend's --port)", async () => {
    const port = await takenPort();
    await expectUsageExit(["--port", String(port), "--grpc-port", "0", "--data-dir", dataDir()], inUse(port, "--port"), START_ENTRY, true);
    await expectUsageExit(
      ["--port", "0", "--grpc-port", String(port), "--data-dir", dataDir()],
      inUse(port, "--grpc-port"),
      START_ENTRY,
      true,
    );
  });

  it("the same port for two listeners is refused before either opens", async () => {
    await expectUsageExit(["serve", "--port", "17999", "--http1-port", "17999"], "--port and --http1-port must be different ports");
    await expectUsageExit(
      ["--port", "17999", "--grpc-port", "17999", "--data-dir", dataDir()],
      "--grpc-port and --port must be different ports",
      START_ENTRY,
    );
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

describe("a second npm start on the ports of a running one", () => {
  /** GET / from the console at `address` ("host:port"): its status code. */
  function consoleStatus(address: string): Promise<number> {
    return new Promise((resolve, reject) => {
      http
        .get(`http://${address}/`, (response) => {
          response.resume();
          response.on("end", () => resolve(response.statusCode ?? 0));
        })
        .on("error", reject);
    });
  }

  it("fails before it opens its data dir, naming the port taken; the first keeps serving, its data dir untouched", async () => {
    const dir = dataDir();
    const first = startCli(["--port", "0", "--grpc-port", "0", "--data-dir", dir], {}, START_ENTRY);
    try {
      const { h2c, http1 } = await first.listening;
      const grpcPort = Number(h2c.slice(h2c.lastIndexOf(":") + 1));
      const consolePort = Number(http1?.slice(http1.lastIndexOf(":") + 1));
      const lock = readFileSync(path.join(dir, "LOCK"), "utf8");
      // Its own data dir: nothing of it may be made. The same data dir: the port is the news, not the lock.
      const fresh = path.join(dataDir(), "never-made");
      for (const target of [fresh, dir]) {
        await expectUsageExit(
          ["--port", String(consolePort), "--grpc-port", String(grpcPort), "--data-dir", target],
          inUse(grpcPort, "--grpc-port"),
          START_ENTRY,
        );
      }
      await expectUsageExit(
        ["--port", String(consolePort), "--grpc-port", "0", "--data-dir", fresh],
        inUse(consolePort, "--port"),
        START_ENTRY,
      );
      expect(existsSync(fresh), "the second start made no data dir").toBe(false);
      expect(readFileSync(path.join(dir, "LOCK"), "utf8"), "the first one's lock").toBe(lock);
      // The first instance still serves the console and gRPC clients.
      expect(await consoleStatus(http1 ?? "")).toBe(200);
      const info = await runClient(["runtime", "info"], { server: `http://${h2c}` });
      expect(info).toMatchObject({ code: 0, stderr: "" });
      expect(first.child.exitCode).toBeNull();
    } finally {
      first.kill();
      await first.exited;
    }
  }, 180_000);
});
