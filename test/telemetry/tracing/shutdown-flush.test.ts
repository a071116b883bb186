import net from "node:net";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { afterEach, describe, expect, it } from "vitest";
import { RuntimeManagement } from "../../../gen/worker_runtime/v1/runtime_management_pb.js";
import { type CliProcess, startCli } from "../../support/cli-process.js";

/**
 * Flushing spans at shutdown must fit in the pod's termination budget
 * (terminationGracePeriodSeconds = preStop + drain grace + a few seconds):
 * a collector that accepts connections and never answers must neither hold
 * the process past that nor turn a clean drain into a failed exit. The
 * exporter's own timeout is raised to 30 s here, so without a bound of our
 * own the process would wait that long.
 */

const processes: CliProcess[] = [];
const sockets: net.Socket[] = [];
let collector: net.Server | undefined;

afterEach(() => {
  for (const cli of processes.splice(0)) cli.kill();
  for (const socket of sockets.splice(0)) socket.destroy();
  collector?.close();
});

/** A TCP server that accepts and never answers: a hung collector. */
async function silentCollector(): Promise<string> {
  collector = net.createServer((socket) => sockets.push(socket));
  await new Promise<void>((resolve) => collector?.listen(0, "127.0.0.1", resolve));
  return `http://127.0.0.1:${(collector.address() as net.AddressInfo).port}`;
}

describe("tracing at shutdown", () => {
  it("gives up flushing to a collector that never answers within a bound, and still exits 0", async () => {
    const endpoint = await silentCollector();
    const cli = startCli(["serve", "--port", "0"], { OTEL_EXPORTER_OTLP_ENDPOINT: endpoint, OTEL_EXPORTER_OTLP_TIMEOUT: "30000" });
    processes.push(cli);
    const { h2c } = await cli.listening;
    const session = new Http2SessionManager(`http://${h2c}`);
    const client = createClient(RuntimeManagement, createGrpcTransport({ baseUrl: `http://${h2c}`, sessionManager: session }));
    await client.getRuntime({}); // one span to export
    session.abort();
    const signalled = Date.now();
    cli.child.kill("SIGTERM");
    const exit = await cli.exited;
    expect(exit).toEqual({ code: 0, signal: null });
    // The bound is 2 s; the rest is slack for a loaded machine, far below the exporter's 30 s.
    expect(Date.now() - signalled).toBeLessThan(10_000);
    expect(cli.stderr()).toContain("spans not exported");
  }, 60_000);
});
