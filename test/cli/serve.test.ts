import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { HealthCheckResponse_ServingStatus as ServingStatus, type HealthCheckResponse } from "../../gen/grpc/health/v1/health_pb.js";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import type { WorkerEvent } from "../../gen/worker_runtime/v1/events_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { RuntimeManagement } from "../../gen/worker_runtime/v1/runtime_management_pb.js";
import { RuntimeStatus } from "../../gen/worker_runtime/v1/runtime_pb.js";
import { startCli, type CliProcess } from "../support/cli-process.js";
import { expectReason } from "../support/errors.js";
import { fifoAt, HUGE_FILE_BYTES, sparseFileAt } from "../support/unreadable-files.js";
import { expiredCertificate, selfSignedCertificate } from "../support/self-signed.js";
import { type Clients, clientsFor, eventually, makeTransport, startHarness } from "../support/harness.js";
import { holdOpen, ScriptedBackend } from "../support/scripted-backend.js";

/**
 * `worker-runtime serve` as a user runs it: the listening line tells the
 * real ports, both listeners answer, SIGTERM shuts down cleanly with exit
 * code 0. Draining with a run in flight needs a scripted backend, which only
 * the library API can inject, so that part runs on startRuntimeServer.
 */

const processes: CliProcess[] = [];

afterEach(() => {
  for (const cli of processes.splice(0)) cli.kill();
});

function serve(args: readonly string[]): CliProcess {
  const cli = startCli(["serve", ...args]);
  processes.push(cli);
  return cli;
}

describe("worker-runtime serve", () => {
  it("prints the real ports, answers on both listeners and exits 0 on SIGTERM", async () => {
    const cli = serve(["--host", "127.0.0.1", "--port", "0", "--http1-port", "0", "--runtime-id", "rt-cli-test"]);
    const listening = await cli.listening;
    expect(listening.runtimeId).toBe("rt-cli-test");
    const h2Port = Number(listening.h2c.split(":").pop());
    const http1Port = Number(listening.http1?.split(":").pop());
    expect(h2Port).toBeGreaterThan(0);
    expect(http1Port).toBeGreaterThan(0);
    expect(http1Port).not.toBe(h2Port);
    // Logs go to stderr, so stdout is only the listening line.
    expect(cli.stdout().trim().split("\n")).toHaveLength(1);

    const h2Url = `http://${listening.h2c}`;
    const session = new Http2SessionManager(h2Url);
    try {
      for (const protocol of ["grpc", "connect"] as const) {
        const clients = clientsFor(makeTransport(protocol, h2Url, session));
        expect((await clients.management.getRuntime({})).runtime?.runtimeId).toBe("rt-cli-test");
      }
      const http1 = createClient(RuntimeManagement, createConnectTransport({ baseUrl: `http://${listening.http1}`, httpVersion: "1.1" }));
      const summary = await http1.getRuntime({});
      expect(summary.runtime?.runtimeId).toBe("rt-cli-test");
      expect(summary.runtime?.status).toBe(RuntimeStatus.SERVING);

      // An open watch stream must not keep the process alive past shutdown.
      const watch = clientsFor(makeTransport("grpc", h2Url, session)).observation.watchRuntime({ runtimeId: "rt-cli-test" });
      const iterator = watch[Symbol.asyncIterator]();
      const first = await iterator.next();
      expect(first.done).toBe(false);
      const streamEnd = (async () => {
        try {
          while (!(await iterator.next()).done);
          return "ended";
        } catch (error) {
          return ConnectError.from(error).code;
        }
      })();

      cli.child.kill("SIGTERM");
      const exit = await cli.exited;
      expect(exit).toEqual({ code: 0, signal: null });
      // The stream ended (cleanly or as cut off) rather than hanging.
      expect(["ended", Code.Unavailable, Code.Canceled, Code.Internal, Code.Unknown]).toContain(await streamEnd);
    } finally {
      session.abort();
    }
    expect(cli.stderr()).toContain('"message":"stopped"');
  });

  it("exits 0 on SIGINT too", async () => {
    const cli = serve(["--port", "0"]);
    await cli.listening;
    cli.child.kill("SIGINT");
    expect(await cli.exited).toEqual({ code: 0, signal: null });
  });

  it.each([
    [["--port", "abc"], "--port must be a port number"],
    [["--port", "70000"], "--port must be a port number"],
    [["--port", "0", "--http1-port=-1"], "--http1-port must be a port number"],
    [["--port", "0", "--shutdown-grace-ms", "soon"], "--shutdown-grace-ms must be"],
    [["--port", "0", "--shutdown-grace-ms=-5"], "--shutdown-grace-ms must be"],
    [["--port", "0", "--shutdown-flush-ms", "0"], "--shutdown-flush-ms must be"],
    [["--port", "0", "--shutdown-flush-ms", "1e3"], "--shutdown-flush-ms must be"],
    // Past the longest Node timer, which fires at once: a drain or flush bound that large ended at once.
    [
      ["--port", "0", "--shutdown-flush-ms", "2147483648"],
      "--shutdown-flush-ms must be a whole number of milliseconds from 1 to 2147483647",
    ],
    [
      ["--port", "0", "--shutdown-grace-ms", "2147483648"],
      "--shutdown-grace-ms must be a whole number of milliseconds from 0 to 2147483647",
    ],
    [["--port", "0", "--shutdown-grace-ms", "1e3"], "--shutdown-grace-ms must be"],
    [["--port", "0", "--shutdown-grace-ms="], "--shutdown-grace-ms must be"],
    [["--port", "0", "--no-such-flag"], "no-such-flag"],
    [["--port", "0", "--runtime-id", "../bad"], "runtime_id"],
  ])("refuses %j with a usage message", async (args, message) => {
    const cli = serve(args);
    const { code } = await cli.exited;
    expect(code).not.toBe(0);
    expect(code).not.toBeNull();
    expect(cli.stderr()).toContain(message);
    expect(cli.stdout()).not.toContain("listening");
  });

  it("refuses a --secrets-file entry no bundle can use, naming it and never printing a value", async () => {
    const dir = await mkdtemp(join(tmpdir(), "serve-secrets-"));
    const file = join(dir, "secrets.json");
    await writeFile(file, JSON.stringify({ "bad-name": "v4lue-never-printed" }), { mode: 0o600 });
    const cli = serve(["--port", "0", "--secrets-file", file]);
    expect(await cli.exited).toEqual({ code: 2, signal: null });
    expect(cli.stderr()).toContain('"bad-name" is not a secret name a bundle can use');
    expect(cli.stderr()).not.toContain("v4lue-never-printed");
    expect(cli.stdout()).not.toContain("listening");
    await rm(dir, { recursive: true });
  });

  // A FIFO would hold start-up until someone wrote to it; a huge file would be read whole into memory.
  describe.each([
    ["--token-file", 65536],
    ["--tls-cert", 1048576],
    ["--tls-key", 1048576],
    ["--secrets-file", 1048576],
    ["--profiles", 1048576],
  ])("refuses a %s that is not a bounded regular file, with exit 2, before listening", (flag, bound) => {
    const refused = async (make: (path: string) => string, message: (path: string) => string): Promise<void> => {
      const dir = await mkdtemp(join(tmpdir(), "serve-files-"));
      try {
        const file = make(join(dir, "named"));
        // The other half of a TLS pair is a readable file, so the refusal is this flag's.
        const other = join(dir, "other.pem");
        await writeFile(other, "-----BEGIN PRIVATE KEY-----\n");
        const pair = flag === "--tls-cert" ? ["--tls-key", other] : flag === "--tls-key" ? ["--tls-cert", other] : [];
        const cli = serve(["--port", "0", flag, file, ...pair]);
        expect(await cli.exited).toEqual({ code: 2, signal: null });
        expect(cli.stderr()).toContain(`worker-runtime: ${message(file)}`);
        expect(cli.stdout()).not.toContain("listening");
      } finally {
        await rm(dir, { recursive: true });
      }
    };
    it("a FIFO", () => refused(fifoAt, (file) => `${flag} ${file} is not a regular file`));
    it("a sparse file past the bound", () =>
      refused(
        (path) => sparseFileAt(path, HUGE_FILE_BYTES),
        (file) => `${flag} ${file} is ${HUGE_FILE_BYTES} bytes; at most ${bound} allowed`,
      ));
  });

  describe("refuses, with exit 2 naming the flag, a TLS pair it could not serve with", () => {
    const refused = async (files: (dir: string) => Promise<[string, string]>, message: (cert: string, key: string) => string) => {
      const dir = await mkdtemp(join(tmpdir(), "serve-tls-"));
      try {
        const [cert, key] = await files(dir);
        const cli = serve(["--port", "0", "--tls-cert", cert, "--tls-key", key]);
        expect(await cli.exited).toEqual({ code: 2, signal: null });
        expect(cli.stderr()).toContain(`worker-runtime: ${message(cert, key)}`);
        expect(cli.stdout()).not.toContain("listening");
      } finally {
        await rm(dir, { recursive: true });
      }
    };
    const junk = async (dir: string, name: string) => {
      await writeFile(join(dir, name), "not a PEM file\n");
      return join(dir, name);
    };
    const good = async (dir: string) => {
      await selfSignedCertificate(dir);
      return [join(dir, "cert.pem"), join(dir, "key.pem")] as const;
    };
    it("a certificate that is not PEM", () =>
      refused(
        async (dir) => [await junk(dir, "cert.txt"), (await good(dir))[1]],
        (cert) => `--tls-cert ${cert} is not a PEM certificate (no start line)`,
      ));
    it("a key that is not PEM", () =>
      refused(
        async (dir) => [(await good(dir))[0], await junk(dir, "key.txt")],
        (_cert, key) => `--tls-key ${key} is not a PEM private key`,
      ));
    it("a key of another certificate", () =>
      refused(
        async (dir) => [(await good(dir))[0], (await expiredCertificate(dir)).keyFile],
        (cert, key) => `--tls-key ${key} does not go with --tls-cert ${cert} (key values mismatch)`,
      ));
    it("an expired certificate", () =>
      refused(
        async (dir) => {
          const { certFile, keyFile } = await expiredCertificate(dir);
          return [certFile, keyFile];
        },
        (cert) => `--tls-cert ${cert} expired on `,
      ));
  });

  it("refuses workspace roots that overlap on the host with exit code 2, naming both", async () => {
    const dir = await mkdtemp(join(tmpdir(), "serve-roots-"));
    await mkdir(join(dir, "code", "sub"), { recursive: true });
    await symlink(join(dir, "code"), join(dir, "alias"));
    for (const second of [`b=${join(dir, "code", "sub")}`, `b=${join(dir, "alias")}`]) {
      const cli = serve(["--port", "0", "--workspace-root", `a=${join(dir, "code")}`, "--workspace-root", second]);
      expect(await cli.exited).toEqual({ code: 2, signal: null });
      expect(cli.stderr()).toContain(`workspace roots "a" (${join(dir, "code")}) and "b" (${second.slice(2)}) overlap on the host`);
      expect(cli.stdout()).not.toContain("listening");
    }
    await rm(dir, { recursive: true });
  });

  it("refuses a token no client could send, without printing it", async () => {
    const cli = startCli(["serve", "--port", "0"], { WORKER_RUNTIME_TOKEN: "s3cret-line-one\ns3cret-line-two" });
    processes.push(cli);
    expect(await cli.exited).toEqual({ code: 2, signal: null });
    expect(cli.stderr()).toBe(
      "worker-runtime: the token (--token-file or WORKER_RUNTIME_TOKEN) has characters an HTTP header cannot carry (a line break, a control or a non-ASCII character)\n",
    );
  });

  it("exits 2 with one line naming the flag when the port is taken (by another runtime here)", async () => {
    const first = serve(["--port", "0"]);
    const { h2c } = await first.listening;
    const second = serve(["--port", String(h2c.split(":").pop())]);
    const { code } = await second.exited;
    expect(code).toBe(2);
    expect(second.stderr()).toBe(
      `worker-runtime: ${h2c} (--port) is already in use by another program: stop it, or choose another port with --port\n`,
    );
    first.child.kill("SIGTERM");
    expect((await first.exited).code).toBe(0);
  });
});

/**
 * Watches `worker` until the server closes; `statuses(runId)` lists the status changes seen of that run.
 * `ready` resolves with the first message (the snapshot): only then is the watch surely being served,
 * so a test closes the server after it, or the watch may arrive too late and see nothing.
 */
function watchRunStatuses(
  clients: Clients,
  worker: WorkerRef | undefined,
): { ready: Promise<void>; done: Promise<void>; statuses(runId?: string): RunStatus[] } {
  const events: WorkerEvent[] = [];
  let served: () => void = () => undefined;
  const ready = new Promise<void>((resolve) => {
    served = resolve;
  });
  const done = (async () => {
    try {
      for await (const message of clients.observation.watchWorker({ worker })) {
        served();
        events.push(...message.events);
      }
    } catch {
      // cut at close
    }
  })();
  return {
    ready: Promise.race([ready, done]),
    done,
    statuses: (runId) =>
      events.flatMap((event) => (event.kind.case === "runChanged" && event.kind.value.runId === runId ? [event.kind.value.status] : [])),
  };
}

describe("graceful shutdown with a run in flight (startRuntimeServer)", () => {
  it("turns health NOT_SERVING, refuses new work, and interrupts the run after the grace period", async () => {
    const backend = new ScriptedBackend();
    const held = holdOpen("partial answer");
    backend.enqueue(held.script);
    const harness = await startHarness({ executionBackend: backend });
    try {
      const clients = harness.connect("grpc");
      const runtimeId = harness.runtime.runtimeId;

      const statuses: ServingStatus[] = [];
      const healthAbort = new AbortController();
      const healthWatch = (async () => {
        try {
          for await (const message of clients.health.watch({}, { signal: healthAbort.signal }) as AsyncIterable<HealthCheckResponse>) {
            statuses.push(message.status);
          }
        } catch {
          // the stream is cut when the server closes
        }
      })();
      await eventually(() => statuses.length > 0, 5_000, "the first health status");
      expect(statuses).toEqual([ServingStatus.SERVING]);

      const worker = (await clients.catalog.createWorker({ runtimeId })).worker?.ref;
      const other = (await clients.catalog.createWorker({ runtimeId })).worker?.ref;
      const run = (await clients.interaction.sendInput({ worker, input: { text: "take your time" } })).run;
      await held.started;

      const watch = watchRunStatuses(clients, worker);
      await watch.ready;

      // The checks below must all be answered within the grace (after it the server is gone): four calls
      // and a health message, which take well over 300 ms on a loaded machine. The grace is the time
      // they get, not a wait for them; the run is still interrupted only once it is over.
      const closed = harness.server.close(5_000);
      await eventually(() => statuses.includes(ServingStatus.NOT_SERVING), 5_000, "health NOT_SERVING");
      // While draining: still answering, reporting DRAINING, refusing new work.
      expect((await clients.health.check({})).status).toBe(ServingStatus.NOT_SERVING);
      expect((await clients.management.getRuntime({})).runtime?.status).toBe(RuntimeStatus.DRAINING);
      await expectReason(
        () => clients.interaction.sendInput({ worker: other, input: { text: "too late" } }),
        Code.Unavailable,
        ErrorReason.RUNTIME_DRAINING,
      );
      await expectReason(() => clients.catalog.createWorker({ runtimeId }), Code.Unavailable, ErrorReason.RUNTIME_DRAINING);

      await closed;
      healthAbort.abort();
      await Promise.all([healthWatch, watch.done]);

      expect(backend.signals[0]?.aborted).toBe(true);
      const ends = watch.statuses(run?.runId);
      expect(ends).toContain(RunStatus.INTERRUPTED);
      expect(ends).not.toContain(RunStatus.COMPLETED);
      expect(harness.runtime.stats().subscriptions).toBe(0);
    } finally {
      await harness.close();
    }
  });
});

describe("a graceful shutdown cut short (startRuntimeServer)", () => {
  it("interrupts the run as soon as the cut signal fires, without waiting out the grace", async () => {
    const backend = new ScriptedBackend();
    const held = holdOpen("partial answer");
    backend.enqueue(held.script);
    const harness = await startHarness({ executionBackend: backend });
    try {
      const clients = harness.connect("grpc");
      const worker = (await clients.catalog.createWorker({ runtimeId: harness.runtime.runtimeId })).worker?.ref;
      const run = (await clients.interaction.sendInput({ worker, input: { text: "take your time" } })).run;
      await held.started;
      const watch = watchRunStatuses(clients, worker);
      await watch.ready;
      const cut = new AbortController();
      // A grace far longer than the test's timeout: only the cut can end this close in time.
      const closed = harness.server.close(10 * 60_000, cut.signal);
      await eventually(async () => (await clients.management.getRuntime({})).runtime?.status === RuntimeStatus.DRAINING, 5_000, "DRAINING");
      cut.abort();
      await closed;
      await watch.done;
      expect(backend.signals[0]?.aborted).toBe(true);
      expect(watch.statuses(run?.runId)).toContain(RunStatus.INTERRUPTED);
    } finally {
      await harness.close();
    }
  });
});
