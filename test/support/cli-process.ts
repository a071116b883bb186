import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import { fileURLToPath } from "node:url";

/** The repository root, where `src/cli/main.ts` lives. */
export const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** What the CLI prints once it listens. */
export interface ListeningLine {
  /** "host:port" of the h2c listener. */
  h2c: string;
  /** "host:port" of the --http1-port listener (HTTP/1.1; HTTP/2 too under TLS), if one was asked for. */
  http1: string | undefined;
  runtimeId: string;
}

/** A `worker-runtime` child process. */
export interface CliProcess {
  readonly child: ChildProcessWithoutNullStreams;
  /** Everything printed so far. */
  stdout(): string;
  stderr(): string;
  /** Resolves with the listening line; rejects if the process exits first. */
  readonly listening: Promise<ListeningLine>;
  /** Resolves when the process has exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGKILLs the process if it is still running (test cleanup). */
  kill(): void;
}

/** The second listener is `http1=` in plain text and `https-browser=` under TLS (HTTP/2 and HTTP/1.1 there). */
const LISTENING = /^worker-runtime listening (?:h2c|https)=(\S+)(?: (?:http1|https-browser)=(\S+))? runtime_id=(\S+)$/m;

/** The line `--metrics-port` prints on stdout; group 1 is the metrics URL. */
export const METRICS_LINE = /^worker-runtime metrics (http:\/\/\S+\/metrics)$/m;

/** Which CLI build to start, and where. */
export interface CliEntry {
  /** Node arguments before the CLI's own (default: run the TypeScript source through tsx). */
  nodeArgs: readonly string[];
  cwd: string;
}

/** The CLI from source, as tests run it by default. */
export const SOURCE_CLI: CliEntry = { nodeArgs: ["--import", "tsx", "src/cli/main.ts"], cwd: REPO_ROOT };

/**
 * Starts the CLI as `node --import tsx src/cli/main.ts ...` (not `npx`, whose
 * wrapper process would survive a kill and hold the port). The environment
 * is the test's minus the variables that configure the runtime, plus `env`.
 */
export function startCli(args: readonly string[], env: Record<string, string> = {}, entry: CliEntry = SOURCE_CLI): CliProcess {
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter(([key]) => key !== "WORKER_RUNTIME_TOKEN" && !key.startsWith("OPENAI")),
  );
  const child = spawn(process.execPath, [...entry.nodeArgs, ...args], {
    cwd: entry.cwd,
    env: { ...inherited, ...env },
  });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("exit", (code, signal) => resolve({ code, signal })),
  );
  const listening = new Promise<ListeningLine>((resolve, reject) => {
    const check = (): void => {
      const match = LISTENING.exec(stdout);
      if (match?.[1] && match[3]) resolve({ h2c: match[1], http1: match[2], runtimeId: match[3] });
    };
    child.stdout.on("data", check);
    void exited.then(({ code, signal }) => reject(new Error(`worker-runtime exited (${code ?? signal}) before listening: ${stderr}`)));
  });
  // Callers that only care about the exit must not see an unhandled rejection.
  listening.catch(() => undefined);
  return {
    child,
    stdout: () => stdout,
    stderr: () => stderr,
    listening,
    exited,
    kill: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    },
  };
}
