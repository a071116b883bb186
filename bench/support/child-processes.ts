import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import type { ProbeReport } from "./runtime-probe.js";

/**
 * The processes of the end-to-end benches: the flood provider, the real
 * `worker-runtime serve` (memory store) pointed at it, and a client process
 * holding the watchers. Each is a separate Node process, as in production,
 * so no measured side shares an event loop with another.
 */

const here = (file: string): string => fileURLToPath(new URL(file, import.meta.url));

/** Started with `node --import tsx`, so the benches run the sources without a build. */
function spawnTs(args: string[], env: NodeJS.ProcessEnv = {}, ipc = false, stderr: "inherit" | "ignore" = "inherit"): ChildProcess {
  // BENCH_CPU_PROF_DIR profiles the runtime; BENCH_CPU_PROF_CLIENT=1 adds the watchers' process.
  const cpuProfDir = process.env["BENCH_CPU_PROF_DIR"];
  const profiled =
    env["WR_BENCH_PROBE"] !== undefined || (process.env["BENCH_CPU_PROF_CLIENT"] === "1" && env["WR_RUNTIME_URL"] !== undefined);
  const node = [...(cpuProfDir && profiled ? ["--cpu-prof", "--cpu-prof-dir", cpuProfDir] : []), "--import", "tsx"];
  return spawn(process.execPath, [...node, ...args], {
    stdio: ["ignore", "pipe", stderr, ...(ipc ? (["ipc"] as const) : [])],
    env: { ...process.env, ...env },
  });
}

/** The first line a child prints on stdout. */
async function firstLine(child: ChildProcess): Promise<string> {
  return (await linesUntil(child, () => true)).at(-1) as string;
}

/** The lines a child prints on stdout up to and including the first that `last` accepts. */
async function linesUntil(child: ChildProcess, last: (line: string) => boolean): Promise<string[]> {
  const lines = createInterface({ input: child.stdout as NodeJS.ReadableStream });
  const exited = once(child, "exit").then(([code]) => {
    throw new Error(`child exited with ${String(code)} before it was ready`);
  });
  const seen: string[] = [];
  const ready = new Promise<void>((resolve) => {
    lines.on("line", (line: string) => {
      // Once ready, lines are dropped, but stdout keeps draining so the child never blocks on a full pipe.
      if (seen.at(-1) !== undefined && last(seen.at(-1) as string)) return;
      seen.push(line);
      if (last(line)) resolve();
    });
  });
  await Promise.race([ready, exited]);
  return seen;
}

/** Request/response over a child's IPC channel. */
class IpcPeer {
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();

  constructor(readonly child: ChildProcess) {
    child.on("message", (message: { id: number; error?: string }) => {
      const waiter = this.waiting.get(message.id);
      this.waiting.delete(message.id);
      if (message.error !== undefined) waiter?.reject(new Error(message.error));
      else waiter?.resolve(message);
    });
    child.on("exit", (code) => {
      for (const waiter of this.waiting.values()) waiter.reject(new Error(`child exited with ${String(code)}`));
      this.waiting.clear();
    });
  }

  request<T>(message: object): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(id, { resolve: resolve as (value: unknown) => void, reject });
      this.child.send({ ...message, id });
    });
  }
}

/** A started child process. */
export interface BenchChild {
  child: ChildProcess;
  /** SIGTERM, then SIGKILL if it lingers; waits for the exit. */
  stop(): Promise<void>;
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, "exit");
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
  await exited;
  clearTimeout(timer);
}

/** The flood provider; `baseURL` ends in /v1. */
export function startFloodProvider(): Promise<BenchChild & { baseURL: string }> {
  return startProviderProcess([here("./flood-provider.ts")]);
}

/** A fake provider script in a process of its own, which prints its base URL first. */
async function startProviderProcess(args: string[]): Promise<BenchChild & { baseURL: string }> {
  const child = spawnTs(args);
  const baseURL = (await firstLine(child)).trim();
  return { child, baseURL, stop: () => stopChild(child) };
}

/** `worker-runtime serve` with the probe preloaded. */
export interface RuntimeChild extends BenchChild {
  /** What it printed up to its "worker-runtime listening ..." line, for addresses other than h2c=. */
  startupLines: readonly string[];
  baseUrl: string;
  runtimeId: string;
  /** Restarts the probe's measurement window. */
  resetProbe(): Promise<void>;
  /** Event-loop delay and CPU since the last reset. */
  report(): Promise<ProbeReport>;
}

/** Extra `serve` flags and environment, e.g. to switch metrics and tracing on. */
export interface RuntimeProcessInit {
  args?: readonly string[];
  env?: NodeJS.ProcessEnv;
}

function runtimeNodeOptions(): NodeJS.ProcessEnv {
  const flags = process.env["BENCH_RUNTIME_NODE_OPTIONS"];
  return flags ? { NODE_OPTIONS: [process.env["NODE_OPTIONS"], flags].filter(Boolean).join(" ") } : {};
}

export async function startRuntimeProcess(providerURL: string, init: RuntimeProcessInit = {}): Promise<RuntimeChild> {
  const child = spawnTs(
    [
      "--import",
      here("./runtime-probe.ts"),
      here("../../src/cli/main.ts"),
      "serve",
      "--host",
      "127.0.0.1",
      "--port",
      "0",
      "--openai-base-url",
      providerURL,
      ...(init.args ?? []),
    ],
    // BENCH_RUNTIME_NODE_OPTIONS gives the runtime alone Node/V8 flags (e.g. --max-semi-space-size=8), to compare settings.
    { OPENAI_API_KEY: "sk-bench", WR_BENCH_PROBE: "1", ...runtimeNodeOptions(), ...init.env },
    true,
    // Its JSON log lines (one per run) would drown the figures.
    "ignore",
  );
  // Optional lines (e.g. "worker-runtime metrics URL") come before the listening line.
  const startup = await linesUntil(child, (line) => line.startsWith("worker-runtime listening"));
  const line = startup.at(-1) as string;
  const h2c = /h2c=(\S+)/.exec(line)?.[1];
  const runtimeId = /runtime_id=(\S+)/.exec(line)?.[1];
  if (!h2c || !runtimeId) throw new Error(`unexpected serve output: ${line}`);
  const peer = new IpcPeer(child);
  return {
    child,
    startupLines: startup,
    baseUrl: `http://${h2c}`,
    runtimeId,
    resetProbe: async () => {
      await peer.request({ op: "reset" });
    },
    report: async () => (await peer.request<{ report: ProbeReport }>({ op: "report" })).report,
    stop: () => stopChild(child),
  };
}

/** The watcher process (bench/support/relay-client.ts), driven by requests. */
export interface ClientChild extends BenchChild {
  request<T>(message: object): Promise<T>;
}

export async function startClientProcess(env: { runtimeUrl: string; runtimeId: string; providerURL: string }): Promise<ClientChild> {
  const child = spawnTs(
    [here("./relay-client.ts")],
    { WR_RUNTIME_URL: env.runtimeUrl, WR_RUNTIME_ID: env.runtimeId, WR_PROVIDER_URL: env.providerURL },
    true,
  );
  await firstLine(child);
  const peer = new IpcPeer(child);
  return { child, request: (message) => peer.request(message), stop: () => stopChild(child) };
}

/**
 * The three processes of the end-to-end relay benches: the flood provider,
 * `serve` pointed at it, and the watcher process. Each is added to
 * `children` as soon as it runs (the client first, so stopping in order
 * ends the watchers before the runtime), so a failed start still stops the rest.
 */
export async function startRelayProcesses(
  children: BenchChild[],
): Promise<{ provider: BenchChild & { baseURL: string }; runtime: RuntimeChild; client: ClientChild }> {
  const provider = await startFloodProvider();
  children.push(provider);
  const runtime = await startRuntimeProcess(provider.baseURL);
  children.push(runtime);
  const client = await startClientProcess({ runtimeUrl: runtime.baseUrl, runtimeId: runtime.runtimeId, providerURL: provider.baseURL });
  children.unshift(client);
  return { provider, runtime, client };
}

/** A provider answering every request with `text` streamed in pieces of `pieceSize` characters; `baseURL` ends in /v1. */
export function startReplyProvider(text: string, pieceSize: number): Promise<BenchChild & { baseURL: string }> {
  return startProviderProcess([here("./reply-provider.ts"), text, String(pieceSize)]);
}
