import { afterEach, describe, expect, it } from "vitest";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { operatorTimeoutsFromFlags } from "../../src/cli/operator-timeouts.js";
import { UsageError } from "../../src/cli/usage-error.js";
import { type CliProcess, startCli } from "../support/cli-process.js";
import { type CuttableProxy, startCuttableProxy } from "../support/cuttable-proxy.js";
import { follow } from "../support/followed-stream.js";
import { clientsFor, eventually, makeTransport } from "../support/harness.js";
import { Http2SessionManager } from "@connectrpc/connect-node";

/**
 * `serve` and `backend` take the runtime's host-path timeout and the
 * server's HTTP/2 keepalive from flags: a bad value is exit 2 naming the
 * flag, and a short keepalive given on the command line really closes a
 * connection whose peer went silent (through the keepalive test's proxy).
 */

const processes: CliProcess[] = [];
const sessions: Http2SessionManager[] = [];
let proxy: CuttableProxy | undefined;
afterEach(async () => {
  for (const session of sessions.splice(0)) session.abort();
  await proxy?.close();
  proxy = undefined;
  for (const cli of processes.splice(0)) {
    cli.kill();
    await cli.exited;
  }
});

describe("timing flags: parsing", () => {
  it("reads whole milliseconds, a keepalive given one flag keeps the other's default, none given leaves the defaults", () => {
    expect(operatorTimeoutsFromFlags({})).toEqual({ hostPathTimeoutMs: undefined, keepalive: undefined });
    expect(operatorTimeoutsFromFlags({ "host-path-timeout-ms": "250", "keepalive-timeout-ms": "400" })).toEqual({
      hostPathTimeoutMs: 250,
      keepalive: { intervalMs: 30_000, timeoutMs: 400 },
    });
    expect(operatorTimeoutsFromFlags({ "keepalive-interval-ms": "100" }).keepalive).toEqual({ intervalMs: 100, timeoutMs: 20_000 });
  });

  it("refuses what is not a whole number of milliseconds in range, naming the flag", () => {
    const cases: [string, string, string][] = [
      // The runtime's own floor for a host lookup (MIN_LOOKUP_MS): a value under it would start nothing.
      ["host-path-timeout-ms", "19", "--host-path-timeout-ms must be a whole number of milliseconds from 20 to 2147483647"],
      ["host-path-timeout-ms", "0", "--host-path-timeout-ms must be a whole number of milliseconds from 20 to 2147483647"],
      ["host-path-timeout-ms", "1e3", "--host-path-timeout-ms must be a whole number of milliseconds from 20 to 2147483647"],
      ["keepalive-interval-ms", "99", "--keepalive-interval-ms must be a whole number of milliseconds from 100 to 2147483647"],
      ["keepalive-interval-ms", "", "--keepalive-interval-ms must be a whole number of milliseconds from 100 to 2147483647"],
      ["keepalive-timeout-ms", "2147483648", "--keepalive-timeout-ms must be a whole number of milliseconds from 100 to 2147483647"],
      ["keepalive-timeout-ms", "-5", "--keepalive-timeout-ms must be a whole number of milliseconds from 100 to 2147483647"],
    ];
    for (const [flag, value, message] of cases) {
      const parse = () => operatorTimeoutsFromFlags({ [flag]: value });
      expect(parse).toThrow(UsageError);
      expect(parse).toThrow(message);
    }
  });
});

/** Runs the CLI to its exit, expecting exit 2 and `message` on stderr. */
async function expectUsageExit(args: readonly string[], message: string): Promise<void> {
  const cli = startCli(args);
  processes.push(cli);
  expect(await cli.exited).toEqual({ code: 2, signal: null });
  expect(cli.stderr()).toBe(`worker-runtime: ${message}\n`);
}

describe("timing flags: the processes", () => {
  it("serve and backend exit 2 on a bad value, naming the flag, and document the flags in --help", async () => {
    await expectUsageExit(
      ["serve", "--port", "0", "--keepalive-timeout-ms", "5s"],
      "--keepalive-timeout-ms must be a whole number of milliseconds from 100 to 2147483647",
    );
    await expectUsageExit(
      ["backend", "--port", "0", "--host-path-timeout-ms", "0"],
      "--host-path-timeout-ms must be a whole number of milliseconds from 20 to 2147483647",
    );
    for (const command of ["serve", "backend"]) {
      const help = startCli([command, "--help"]);
      processes.push(help);
      expect(await help.exited).toEqual({ code: 0, signal: null });
      for (const flag of ["--host-path-timeout-ms", "--keepalive-interval-ms", "--keepalive-timeout-ms"])
        expect(help.stdout()).toContain(flag);
    }
  }, 60_000);

  it("serve --keepalive-*-ms closes a connection whose peer stopped answering pings", async () => {
    const cli = startCli([
      "serve",
      "--port",
      "0",
      "--keepalive-interval-ms",
      "100",
      "--keepalive-timeout-ms",
      "400",
      "--host-path-timeout-ms",
      "2000",
    ]);
    processes.push(cli);
    const { h2c, runtimeId } = await cli.listening;
    const clientsAt = (baseUrl: string) => {
      const session = new Http2SessionManager(baseUrl);
      sessions.push(session);
      return clientsFor(makeTransport("grpc", baseUrl, session));
    };
    const direct = clientsAt(`http://${h2c}`);
    const worker = (await direct.catalog.createWorker({ runtimeId })).worker?.ref as WorkerRef;
    proxy = await startCuttableProxy(h2c);
    const proxied = clientsAt(proxy.url.replace(/\/$/, ""));
    const vanishing = follow(proxied.observation.watchWorker({ worker }));
    await proxied.catalog.getWorker({ worker });
    // Pings are answered for a while (several intervals): the connection stays.
    await new Promise((resolve) => setTimeout(resolve, 600));
    expect(proxy.closedByTarget).toBe(0);
    proxy.freeze();
    // The default timeout (20 s) would not close it within this wait; the flag's 400 ms does.
    await eventually(() => proxy?.closedByTarget === 1, 10_000, "the server to close the silent connection");
    expect(cli.stderr()).toContain("closing an HTTP/2 connection whose peer did not answer a ping");
    await vanishing.ended;
  }, 60_000);
});
