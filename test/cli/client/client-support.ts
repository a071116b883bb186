import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Http2SessionManager } from "@connectrpc/connect-node";
import { REPO_ROOT, startCli, type CliProcess } from "../../support/cli-process.js";
import { startFakeOpenAI, type FakeOpenAI } from "../../support/fake-openai.js";
import { clientsFor, makeTransport, type Clients } from "../../support/harness.js";

/**
 * A real `worker-runtime serve` child process for the client commands to
 * talk to, with the fake OpenAI provider behind it and generated clients
 * for checking the server's state directly.
 */
export interface ServedRuntime {
  readonly url: string;
  readonly runtimeId: string;
  readonly process: CliProcess;
  readonly fake: FakeOpenAI;
  /** Generated clients on their own HTTP/2 session. */
  readonly clients: Clients;
  /** A scratch directory removed on close (workspace root "ws" lives in it). */
  readonly dir: string;
  close(): Promise<void>;
}

/** How to start the runtime. */
export interface ServeInit {
  /** Connect the fake provider (default true); without it workers are NOT_CONNECTED. */
  provider?: boolean;
  /** Require this bearer token. */
  token?: string;
  /** Extra profiles, as the --profiles file's JSON. */
  profiles?: object[];
  /** Keep state in this directory (and a fixed port when given). */
  dataDir?: string;
  port?: number;
  runtimeId?: string;
  /** Reuse a fake provider (across restarts). */
  fake?: FakeOpenAI;
  /** Extra environment (e.g. WORKER_RUNTIME_LOG_LEVEL=debug, to see every RPC in its log). */
  env?: Record<string, string>;
}

/** Starts `worker-runtime serve` on 127.0.0.1 (port 0 unless given). */
export async function serveRuntime(init: ServeInit = {}): Promise<ServedRuntime> {
  const dir = mkdtempSync(path.join(tmpdir(), "wr-cli-client-"));
  const fake = init.fake ?? (await startFakeOpenAI());
  const workspace = path.join(dir, "ws");
  const args = ["serve", "--host", "127.0.0.1", "--port", String(init.port ?? 0), "--shutdown-grace-ms", "200"];
  args.push("--runtime-id", init.runtimeId ?? "rt-client");
  if (init.provider !== false) args.push("--openai-base-url", fake.baseURL, "--openai-keyless", "--openai-model", "fake-model");
  if (init.dataDir !== undefined) args.push("--data-dir", init.dataDir);
  if (init.token !== undefined) {
    const tokenFile = path.join(dir, "token");
    writeFileSync(tokenFile, init.token);
    args.push("--token-file", tokenFile);
  }
  if (init.profiles !== undefined) {
    const file = path.join(dir, "profiles.json");
    writeFileSync(file, JSON.stringify({ profiles: init.profiles }));
    args.push("--profiles", file);
  }
  mkdirSync(workspace);
  args.push("--workspace-root", `ws=${workspace}`);
  const child = startCli(args, init.env);
  const listening = await child.listening;
  const url = `http://${listening.h2c}`;
  const session = new Http2SessionManager(url);
  const headers = init.token !== undefined ? { authorization: `Bearer ${init.token}` } : undefined;
  return {
    url,
    runtimeId: listening.runtimeId,
    process: child,
    fake,
    clients: clientsFor(makeTransport("grpc", url, session, headers)),
    dir,
    async close() {
      session.abort();
      if (child.child.exitCode === null && child.child.signalCode === null) {
        child.child.kill("SIGTERM");
        await Promise.race([child.exited, new Promise((resolve) => setTimeout(resolve, 5_000))]);
        child.kill();
      }
      if (init.fake === undefined) await fake.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** What one client command printed, and how it exited. */
export interface ClientResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Options for {@link runClient}. */
export interface RunClientInit {
  /** WORKER_RUNTIME_SERVER for the child (omit with `env` to test the flag). */
  server?: string;
  env?: Record<string, string>;
  /** Written to stdin, which is then closed. */
  input?: string;
}

/** Starts a client command (from source) without waiting for it. */
export function startClient(args: readonly string[], init: RunClientInit = {}): CliProcess {
  const env: Record<string, string> = {
    NO_COLOR: "",
    ...(init.server !== undefined ? { WORKER_RUNTIME_SERVER: init.server } : {}),
    ...init.env,
  };
  const child = startCli(args, env);
  // A client may stop reading stdin early (text over the input limit): the rest of a write then meets EPIPE.
  child.child.stdin.on("error", (error: NodeJS.ErrnoException) => {
    if (error.code !== "EPIPE") throw error;
  });
  if (init.input !== undefined) child.child.stdin.end(init.input);
  else child.child.stdin.end();
  return child;
}

/** Runs a client command to its end. */
export async function runClient(args: readonly string[], init: RunClientInit = {}): Promise<ClientResult> {
  const child = startClient(args, init);
  const { code, signal } = await child.exited;
  return { code, signal, stdout: child.stdout(), stderr: child.stderr() };
}

/** Parses stdout as JSON lines; fails on any line that is not JSON. */
export function jsonLines(stdout: string): Record<string, unknown>[] {
  return stdout
    .split("\n")
    .filter((line) => line !== "")
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

/**
 * The complete JSON lines a still-running command has printed so far: the
 * text after the last newline is a line still being written (a pipe hands
 * a long line over in pieces), so it is left for the next read.
 */
export function printedJsonLines(stdout: string): Record<string, unknown>[] {
  return jsonLines(stdout.slice(0, stdout.lastIndexOf("\n") + 1));
}

/** How many runs a `watch --output json` has printed as COMPLETED. */
export function completedRuns(lines: Record<string, unknown>[]): number {
  return lines.filter(
    (line) => (line.event as { runChanged?: { status: string } } | undefined)?.runChanged?.status === "RUN_STATUS_COMPLETED",
  ).length;
}

/**
 * Runs a client command under util-linux `script`, so its stdout is a
 * terminal (tables and colours); returns what the terminal showed, with
 * `env` added (WORKER_RUNTIME_SERVER says where the server is).
 */
export function runInTerminal(args: readonly string[], env: Record<string, string>): Promise<{ code: number | null; screen: string }> {
  const command = [process.execPath, "--import", "tsx", "src/cli/main.ts", ...args].map((word) => `'${word}'`).join(" ");
  const { NO_COLOR: _dropped, ...inherited } = process.env;
  const child = spawn("script", ["-qec", command, "/dev/null"], {
    cwd: REPO_ROOT,
    env: { ...inherited, TERM: "xterm-256color", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let screen = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (screen += chunk));
  return new Promise((resolve) => child.once("exit", (code) => resolve({ code, screen: screen.replace(/\r\n/g, "\n") })));
}
