import { mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { type CliProcess, startCli } from "../support/cli-process.js";
import { START_ENTRY, startConsole } from "./console-process.js";

/**
 * `npm start`'s entry as a process: how it starts and how it refuses to.
 * (The console's pages and chat are in console.test.ts.)
 */
const dirs: string[] = [];
const listeners: net.Server[] = [];
const started: CliProcess[] = [];

afterAll(async () => {
  for (const cli of started) cli.kill();
  await Promise.all(started.map((cli) => cli.exited));
  await Promise.all(listeners.map((listener) => new Promise((resolve) => listener.close(resolve))));
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "console-start-"));
  dirs.push(dir);
  return dir;
}

/** A port some other program holds on 127.0.0.1. */
async function takenPort(): Promise<number> {
  const listener = net.createServer();
  listeners.push(listener);
  await new Promise<void>((resolve) => listener.listen(0, "127.0.0.1", resolve));
  return (listener.address() as net.AddressInfo).port;
}

/** The process's exit, or "still running" if it has not exited within `ms`. */
async function exitWithin(cli: CliProcess, ms: number): Promise<{ code: number | null; signal: NodeJS.Signals | null } | "still running"> {
  let timer: NodeJS.Timeout | undefined;
  const waited = new Promise<"still running">((resolve) => {
    timer = setTimeout(() => resolve("still running"), ms);
  });
  try {
    return await Promise.race([cli.exited, waited]);
  } finally {
    clearTimeout(timer);
  }
}

/** GET `path` from `address` ("host:port") with exactly this Host header. */
function getWithHost(address: string, host: string, path = "/"): Promise<number> {
  const colon = address.lastIndexOf(":");
  return new Promise((resolve, reject) => {
    const request = http.request(
      { hostname: address.slice(0, colon), port: address.slice(colon + 1), path, headers: { host }, setHost: false },
      (response) => {
        response.resume();
        response.on("end", () => resolve(response.statusCode ?? 0));
      },
    );
    request.on("error", reject);
    request.end();
  });
}

describe("npm start", () => {
  it("exits 2 naming the address and its flag when the console's port is taken, instead of hanging on the gRPC port it opened", async () => {
    const port = await takenPort();
    const cli = startCli(["--port", String(port), "--grpc-port", "0", "--data-dir", tempDir()], {}, START_ENTRY);
    started.push(cli);
    expect(await exitWithin(cli, 30_000)).toEqual({ code: 2, signal: null });
    // Beside the JSON log lines of the runtime it had started.
    const printed = cli
      .stderr()
      .split("\n")
      .filter((line) => line !== "" && !line.startsWith("{"));
    expect(printed).toEqual([
      `worker-runtime: 127.0.0.1:${port} (--port) is already in use by another program: stop it, or choose another port with --port`,
    ]);
    expect(cli.stdout()).not.toContain("console ready");
  });

  it("serves the console to loopback names and --allow-host names only (DNS rebinding)", async () => {
    const { cli, url } = await startConsole(
      ["--port", "0", "--grpc-port", "0", "--data-dir", tempDir(), "--allow-host", "Console.Internal"],
      {},
    );
    started.push(cli);
    const address = new URL(url).host;
    const port = new URL(url).port;
    expect(await getWithHost(address, `127.0.0.1:${port}`)).toBe(200);
    expect(await getWithHost(address, `console.internal:${port}`)).toBe(200);
    expect(await getWithHost(address, `attacker.example:${port}`)).toBe(403);
    expect(await getWithHost(address, `attacker.example:${port}`, "/worker_runtime.v1.RuntimeRegistry/ListRuntimes")).toBe(403);
  });

  it("refuses an --allow-host value that is not a host name, as a usage error", async () => {
    const cli = startCli(
      ["--port", "0", "--grpc-port", "0", "--data-dir", tempDir(), "--allow-host", "http://x.example:80"],
      {},
      START_ENTRY,
    );
    started.push(cli);
    expect(await cli.exited).toEqual({ code: 2, signal: null });
    expect(cli.stderr()).toBe('worker-runtime: --allow-host must be a host name without scheme or port (got "http://x.example:80")\n');
  });

  it("refuses --http1-port beside --port, which would silently drop one: under npm start both are the console's port", async () => {
    for (const args of [
      ["--http1-port", "9001", "--port", "0"],
      ["--port=0", "--http1-port=9001"],
    ]) {
      const cli = startCli([...args, "--grpc-port", "0", "--data-dir", tempDir()], {}, START_ENTRY);
      started.push(cli);
      expect(await exitWithin(cli, 30_000), args.join(" ")).toEqual({ code: 2, signal: null });
      expect(cli.stderr()).toBe(
        "worker-runtime: --http1-port and --port both set the console's port (npm start's --port is the backend's --http1-port): give only --port\n",
      );
    }
  });

  it("refuses an empty or non-decimal port as a usage error instead of taking any free port", async () => {
    for (const args of [["--port="], ["--grpc-port", ""], ["--port", "0x1F90"], ["--port"]]) {
      const cli = startCli([...args, "--data-dir", tempDir()], {}, START_ENTRY);
      started.push(cli);
      expect(await exitWithin(cli, 30_000), args.join(" ")).toEqual({ code: 2, signal: null });
      expect(cli.stderr()).toMatch(/^worker-runtime: --(grpc-)?port must be a port number 0-65535\n$/);
    }
  });
});
