import { execFileSync, spawn } from "node:child_process";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { Http2SessionManager } from "@connectrpc/connect-node";
import { REPEAT_WINDOW_MS } from "../../src/cli/shutdown-signals.js";
import { startCli, type CliProcess } from "../support/cli-process.js";
import { type FakeOpenAI, startFakeOpenAI } from "../support/fake-openai.js";
import { clientsFor, eventually, makeTransport } from "../support/harness.js";
import { parseLogLines } from "../support/log-lines.js";
import { CLIENT_PREFACE, DATA, END_HEADERS, END_STREAM, HEADERS, http2Frame, literalHeaders, SETTINGS } from "../support/raw-http2.js";

/**
 * SIGTERM must end the process within the grace period plus a bounded close,
 * whatever the clients do: a client that stopped reading (a silent HTTP/2
 * peer, a SIGSTOPped process with a stream open) or one that left a socket
 * without a session (connected and said nothing, or an HTTP/1.1 request cut
 * mid-way) must not hold the process open. The bound checked here is a hang
 * guard, far above the close budget, not a timing assertion.
 */

const processes: CliProcess[] = [];
const sockets: net.Socket[] = [];
const stopped: number[] = [];

afterEach(() => {
  for (const pid of stopped.splice(0)) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  for (const socket of sockets.splice(0)) socket.destroy();
  for (const cli of processes.splice(0)) cli.kill();
});

const HANG_GUARD_MS = 20_000;

/**
 * Starts the CLI with `args` against `fake`, and one run in flight: its
 * provider request made and stalled. `session` gets the client's HTTP/2
 * session, for the test to abort at the end.
 */
async function startWithRunInFlight(
  args: readonly string[],
  fake: FakeOpenAI,
  session: { manager?: Http2SessionManager },
): Promise<CliProcess> {
  fake.enqueue({ kind: "stall" });
  const cli = startCli(args, { OPENAI_API_KEY: "sk-test", OPENAI_BASE_URL: fake.baseURL });
  processes.push(cli);
  const { h2c, runtimeId } = await cli.listening;
  session.manager = new Http2SessionManager(`http://${h2c}`);
  const clients = clientsFor(makeTransport("grpc", `http://${h2c}`, session.manager));
  const worker = (await clients.catalog.createWorker({ runtimeId })).worker?.ref;
  await clients.interaction.sendInput({ worker, input: { text: "take your time" } });
  await eventually(() => fake.requests.length > 0, 10_000, "the provider request");
  return cli;
}

/**
 * A raw HTTP/2 client that opens a WatchRuntime stream and then goes silent:
 * it never acknowledges settings, never reads, never closes.
 */
function silentH2Watcher(address: string, runtimeId: string): Promise<net.Socket> {
  const [host, port] = splitAddress(address);
  const headers = literalHeaders({
    ":method": "POST",
    ":scheme": "http",
    ":path": "/worker_runtime.v1.WorkerObservation/WatchRuntime",
    ":authority": "localhost",
    "content-type": "application/grpc",
    te: "trailers",
  });
  const message = Buffer.concat([Buffer.from([0x0a, runtimeId.length]), Buffer.from(runtimeId)]);
  const request = Buffer.concat([Buffer.from([0, 0, 0, 0, message.length]), message]);
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, host, () => {
      socket.write(
        Buffer.concat([
          CLIENT_PREFACE,
          http2Frame(SETTINGS, 0, 0),
          http2Frame(HEADERS, END_HEADERS, 1, headers),
          http2Frame(DATA, END_STREAM, 1, request),
        ]),
      );
      resolve(socket);
    });
    socket.on("error", reject);
    // Never read: the kernel buffers what the server sends until its window is full.
    socket.pause();
    sockets.push(socket);
  });
}

/** A socket that connects and says nothing. */
function mute(address: string): Promise<net.Socket> {
  const [host, port] = splitAddress(address);
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, host, () => resolve(socket));
    socket.on("error", () => undefined);
    socket.once("error", reject);
    sockets.push(socket);
  });
}

/** An HTTP/1.1 request whose body never finishes. */
function halfRequest(address: string): Promise<net.Socket> {
  const [host, port] = splitAddress(address);
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, host, () => {
      socket.write(
        "POST /worker_runtime.v1.RuntimeManagement/GetRuntime HTTP/1.1\r\nHost: localhost\r\n" +
          "Content-Type: application/json\r\nConnect-Protocol-Version: 1\r\nContent-Length: 100\r\n\r\n{",
      );
      resolve(socket);
    });
    socket.on("error", () => undefined);
    socket.once("error", reject);
    sockets.push(socket);
  });
}

/** A child process holding a watch over a connect-node client, then SIGSTOPped. */
async function stoppedWatcher(address: string, runtimeId: string): Promise<void> {
  const script = `
    import { createClient } from "@connectrpc/connect";
    import { createGrpcTransport } from "@connectrpc/connect-node";
    import { WorkerObservation } from "./gen/worker_runtime/v1/worker_observation_pb.js";
    const client = createClient(WorkerObservation, createGrpcTransport({ baseUrl: "http://${address}" }));
    for await (const message of client.watchRuntime({ runtimeId: "${runtimeId}" })) { process.stdout.write("message\\n"); }
  `;
  const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
    cwd: new URL("../../", import.meta.url),
    stdio: ["ignore", "pipe", "inherit"],
  });
  await new Promise<void>((resolve, reject) => {
    child.stdout.once("data", () => resolve());
    child.once("exit", (code) => reject(new Error(`watcher exited early (${code})`)));
  });
  if (child.pid === undefined) throw new Error("no pid");
  stopped.push(child.pid);
  child.kill("SIGSTOP");
}

function splitAddress(address: string): [string, number] {
  const colon = address.lastIndexOf(":");
  return [address.slice(0, colon), Number(address.slice(colon + 1))];
}

async function exitWithin(cli: CliProcess, ms: number): Promise<{ code: number | null; signal: NodeJS.Signals | null } | "hung"> {
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<"hung">((resolve) => (timer = setTimeout(() => resolve("hung"), ms)));
  try {
    return await Promise.race([cli.exited, hung]);
  } finally {
    clearTimeout(timer);
  }
}

describe("SIGTERM with clients that hold connections open", () => {
  it("exits 0 although clients went silent or left sockets without a session", async () => {
    const cli = startCli(["serve", "--port", "0", "--http1-port", "0", "--shutdown-grace-ms", "200"]);
    processes.push(cli);
    const { h2c, http1, runtimeId } = await cli.listening;
    if (!http1) throw new Error("no http1 listener");
    await silentH2Watcher(h2c, runtimeId);
    await mute(h2c);
    await mute(http1);
    await halfRequest(http1);
    await stoppedWatcher(h2c, runtimeId);
    // Let the server take every connection in.
    await new Promise((resolve) => setTimeout(resolve, 200));

    cli.child.kill("SIGTERM");
    expect(await exitWithin(cli, HANG_GUARD_MS)).toEqual({ code: 0, signal: null });
    expect(cli.stderr()).toContain('"message":"stopped"');
  }, 60_000);
});

/** The number of times `text` occurs in `haystack`. */
function occurrences(haystack: string, text: string): number {
  return haystack.split(text).length - 1;
}

/** Resolves once the process has logged `message` on stderr. */
async function logged(cli: CliProcess, message: string): Promise<void> {
  while (!cli.stderr().includes(`"message":"${message}"`)) {
    if (cli.child.exitCode !== null || cli.child.signalCode !== null) throw new Error(`exited before logging "${message}"`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe("a second signal during the drain", () => {
  // `npm start` sends Ctrl-C's SIGINT on to node, which the terminal has already sent it: node gets it
  // twice. A mute socket holds the close open (until the forced close), so the repeats land mid-shutdown.
  it.each(["serve", "backend"])(
    "%s: neither kills the process nor starts the shutdown again; exit 0 after one drain",
    async (command) => {
      const cli = startCli([command, "--port", "0", "--shutdown-grace-ms", "200"]);
      processes.push(cli);
      const { h2c } = await cli.listening;
      await mute(h2c);

      cli.child.kill("SIGINT");
      await logged(cli, "shutting down");
      cli.child.kill("SIGINT");
      cli.child.kill("SIGTERM");
      await logged(cli, "already shutting down");
      expect(await exitWithin(cli, HANG_GUARD_MS)).toEqual({ code: 0, signal: null });
      expect(occurrences(cli.stderr(), '"message":"shutting down"')).toBe(1);
      expect(cli.stderr()).toContain('"message":"stopped"');
    },
    60_000,
  );
});

describe("a signal repeated after the first one's moment", () => {
  // An operator pressing Ctrl-C again: the run still going is interrupted now, not at the grace's end.
  it.each(["serve", "backend"])(
    "%s: cuts the grace short (the run in flight is interrupted now) and exits 0 after a clean close",
    async (command) => {
      const fake = await startFakeOpenAI();
      const session: { manager?: Http2SessionManager } = {};
      try {
        // A grace far past the hang guard: only the cut lets the process exit in time.
        const cli = await startWithRunInFlight([command, "--port", "0", "--shutdown-grace-ms", "600000"], fake, session);

        cli.child.kill("SIGINT");
        await logged(cli, "shutting down");
        await new Promise((resolve) => setTimeout(resolve, REPEAT_WINDOW_MS + 200));
        cli.child.kill("SIGINT");
        await logged(cli, "asked again: interrupting runs now instead of waiting out the grace");
        expect(await exitWithin(cli, HANG_GUARD_MS)).toEqual({ code: 0, signal: null });
        expect(occurrences(cli.stderr(), '"message":"shutting down"')).toBe(1);
        expect(cli.stderr()).toContain('"message":"stopped"');
      } finally {
        session.manager?.abort();
        await fake.close();
      }
    },
    60_000,
  );
});

describe("a close that fails", () => {
  // A supervisor reads exit 0 as "drained cleanly, state on disk": when the store could not write what
  // the drain wrote (here: the data dir is gone, so the interrupted run's records have nowhere to go), it
  // must hear otherwise, and the log must say why.
  it.each(["serve", "backend"])(
    "%s: exits non-zero and logs why when the drain's writes fail",
    async (command) => {
      const fake = await startFakeOpenAI();
      const dataDir = await mkdtemp(path.join(tmpdir(), "close-fails-"));
      const session: { manager?: Http2SessionManager } = {};
      try {
        const cli = await startWithRunInFlight([command, "--port", "0", "--data-dir", dataDir, "--shutdown-grace-ms", "0"], fake, session);

        // The server may be writing into the directory meanwhile (ENOTEMPTY mid-removal): retry, as rm allows.
        await rm(dataDir, { recursive: true, force: true, maxRetries: 5 });
        cli.child.kill("SIGTERM");
        const exit = await exitWithin(cli, HANG_GUARD_MS);
        expect(exit).not.toBe("hung");
        expect(exit).not.toEqual({ code: 0, signal: null });
        expect(exit).toEqual({ code: 1, signal: null });
        expect(cli.stderr()).toContain('"message":"shutdown failed"');
        expect(cli.stderr()).not.toContain('"message":"stopped"');
      } finally {
        session.manager?.abort();
        await fake.close();
        await rm(dataDir, { recursive: true, force: true });
      }
    },
    60_000,
  );
});

describe("a store write that never settles", () => {
  // A disk that hangs: the runtime-wide event log's first segment is a FIFO nobody reads, so the
  // store's open of it for the first runtime event (the worker's creation) blocks in the kernel.
  // Without a bound the close waited for that write forever, and so did the process.
  // `backend` hosts its embedded runtime through the same code (hostedRuntime, closeForShutdown, main's
  // stoppedWith) and through the Backend's routes: the create goes to the embedded runtime's store.
  it.each(["serve", "backend"])(
    "%s: ends the process after --shutdown-flush-ms, non-zero, logging which writes did not settle",
    async (command) => {
      const dataDir = await mkdtemp(path.join(tmpdir(), "close-hangs-"));
      try {
        const cli = startCli([command, "--port", "0", "--data-dir", dataDir, "--shutdown-grace-ms", "0", "--shutdown-flush-ms", "300"]);
        processes.push(cli);
        const { h2c, runtimeId } = await cli.listening;
        expect(await readdir(path.join(dataDir, "events"))).toEqual([]);
        execFileSync("mkfifo", [path.join(dataDir, "events", `${"1".padStart(20, "0")}.log`)]);
        const manager = new Http2SessionManager(`http://${h2c}`);
        try {
          const clients = clientsFor(makeTransport("grpc", `http://${h2c}`, manager));
          // Acknowledged once the worker's snapshot is durable; its runtime event is written after, into the FIFO.
          await clients.catalog.createWorker({ runtimeId });
        } finally {
          manager.abort();
        }

        cli.child.kill("SIGTERM");
        const exit = await exitWithin(cli, HANG_GUARD_MS);
        expect(exit).not.toBe("hung");
        expect(exit).not.toEqual({ code: 0, signal: null });
        // Node's own exit waits for its I/O threads, one of which the hung write holds: the process kills itself.
        expect(exit).toEqual({ code: null, signal: "SIGKILL" });
        const timedOut = parseLogLines(cli.stderr()).find((line) => line.message === "runtime close timed out");
        expect(timedOut?.level).toBe("error");
        expect(timedOut?.["unsettled"]).toContain("appendRuntimeEvents (runtime events)");
        expect(cli.stderr()).toContain('"message":"shutdown failed"');
        expect(cli.stderr()).not.toContain('"message":"stopped"');
      } finally {
        await rm(dataDir, { recursive: true, force: true });
      }
    },
    60_000,
  );
});
