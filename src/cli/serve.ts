import { parseArgs } from "node:util";
import {
  createRuntime,
  StoreConflictError,
  WorkspaceRootsError,
  type Logger,
  type Runtime,
  type RuntimeMetrics,
  type RuntimeOptions,
} from "../runtime/index.js";
import { DEFAULT_MAX_CONCURRENT_STREAMS, ServerConfigError, startRuntimeServer } from "../server/index.js";
import { HiddenPathError } from "../engine/index.js";
import { createFileStore } from "../store/fs/index.js";
import { startTracingFromEnv, type Tracing, TracingConfigError } from "../telemetry/tracing/index.js";
import { loadHostSecrets, SecretsConfigError } from "./host-secrets-config.js";
import { backendFromFlags, EXECUTION_OPTIONS, EXECUTION_USAGE, ExecutionConfigError, workspaceRootsFromFlags } from "./execution-config.js";
import { createPinoLogger, LogConfigError, logConfigFromEnv } from "./pino-logger.js";
import { closeForShutdown, logStopped, type ShutdownOutcome } from "./server-shutdown.js";
import {
  METRICS_OPTIONS,
  METRICS_USAGE,
  MetricsConfigError,
  type ProcessMetrics,
  processMetricsFromFlags,
  serveMetrics,
} from "./metrics-config.js";
import { onShutdownSignal } from "./shutdown-signals.js";
import { listeningLine } from "./listening-line.js";
import { hostFlags, parseFlushMs } from "./host-flags.js";
import { checkDistinctPorts, checkPortsFree, explainListenError, type PortFlag } from "./port-in-use.js";
import { refuseEmptyPaths } from "./path-flags.js";
import { UsageError } from "./usage-error.js";
import { OPERATOR_TIMEOUT_OPTIONS, OPERATOR_TIMEOUT_USAGE, operatorTimeoutsFromFlags } from "./operator-timeouts.js";

export { UsageError } from "./usage-error.js";

export const SERVE_USAGE = `usage: worker-runtime serve [--host 127.0.0.1] [--port 7070] [--http1-port N]
                            [--runtime-id ID] [--token-file PATH] [--data-dir DIR]
                            [--tls-cert PATH --tls-key PATH] [--metrics-port N [--metrics-host H]]
  --host         address to listen on (non-loopback requires a token)
  --port         h2c port for gRPC, Connect and gRPC-Web (0 = any free port)
  --http1-port   extra HTTP/1.1 port for Connect and gRPC-Web (curl, browsers); with TLS it
                 also speaks HTTP/2 (ALPN), so a browser's tabs share one connection
  --allow-host NAME  without a token the --http1-port answers only a loopback Host and Origin
                 (127.0.0.1, localhost, [::1]: DNS rebinding protection); also accept NAME (repeatable)
  --runtime-id   fixed runtime id (1-64 of [A-Za-z0-9._-])
  --token-file   file holding the bearer token (or set WORKER_RUNTIME_TOKEN)
  --tls-cert, --tls-key  PEM certificate and key: serve TLS; the main port then also
                 speaks HTTP/1.1 (the listening line says https= instead of h2c=)
  --data-dir     keep workers, transcripts, runs and events in DIR (crash-safe); without it
                 everything lives in memory and is lost on exit
  --max-concurrent-streams N  open streams per HTTP/2 connection (16 or more; default 10000); past
                 it a client's next call waits for one to end. A Backend uses one connection per
                 runtime: two streams of its own, plus one per WatchWorker or StreamInput it relays
  --shutdown-grace-ms  how long runs may finish on SIGTERM before interruption (default 10000)
  --shutdown-flush-ms  then, beyond the 5 s a run may take to wind down, how long the store may
                 take to write what the drain recorded and close (default 5000); past it the
                 writes that did not settle are logged at error level and the process ends
                 non-zero (SIGKILL: a write hung in the kernel holds Node's own exit)
${OPERATOR_TIMEOUT_USAGE}
  --secrets-file JSON object of host secrets by name, for config bundles' profiles; must be
                 mode 0600, names of [A-Za-z0-9_] (not starting with a digit), values non-empty
                 (also WORKER_RUNTIME_SECRET_<NAME> variables)
  logs: JSON lines on stderr; WORKER_RUNTIME_LOG_LEVEL=trace|debug|info|warn|error|fatal|silent
                 (default info); WORKER_RUNTIME_LOG_PAYLOADS=1 logs model text and tool payloads
                 (dangerous, debugging only; see docs/logging.md)
${METRICS_USAGE}
${EXECUTION_USAGE}`;

/**
 * The `util.parseArgs` options of a process that hosts a runtime (listeners,
 * auth, TLS, storage, host secrets, shutdown), shared by `serve` and
 * `backend`; each adds its own `--port` default.
 */
export const RUNTIME_HOST_OPTIONS = {
  host: { type: "string", default: "127.0.0.1" },
  "http1-port": { type: "string" },
  "allow-host": { type: "string", multiple: true },
  "runtime-id": { type: "string" },
  "token-file": { type: "string" },
  "tls-cert": { type: "string" },
  "tls-key": { type: "string" },
  "data-dir": { type: "string" },
  "secrets-file": { type: "string" },
  "shutdown-grace-ms": { type: "string", default: "10000" },
  "max-concurrent-streams": { type: "string", default: String(DEFAULT_MAX_CONCURRENT_STREAMS) },
  "shutdown-flush-ms": { type: "string", default: "5000" },
  ...OPERATOR_TIMEOUT_OPTIONS,
  ...METRICS_OPTIONS,
  help: { type: "boolean", default: false },
} as const;

/**
 * `worker-runtime serve`: starts a standalone runtime server, prints one
 * "listening" line once ready, and shuts down gracefully on SIGTERM/SIGINT.
 * Resolves with how the shutdown ended once it has served and stopped
 * (undefined for --help).
 */
export async function serve(argv: string[]): Promise<ShutdownOutcome | undefined> {
  const { values } = parseArgs({
    args: argv,
    options: { ...RUNTIME_HOST_OPTIONS, ...EXECUTION_OPTIONS, port: { type: "string", default: "7070" } },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    process.stdout.write(`${SERVE_USAGE}\n`);
    return undefined;
  }
  refuseEmptyPaths(values);
  const { logger, fields: logFields } = processLogger();
  const { graceMs, maxConcurrentStreams, keepalive, port, http1Port, token, tls, allowedHosts } = hostFlags(values);
  const tracing = await startTracing("worker-runtime");
  const metrics = await readMetrics(values);
  const listeners = portFlags(values.host, port, http1Port, metrics);
  await checkPortsFree(listeners);
  const runtime = await hostedRuntime(values, logger, metrics?.prometheus.runtime);
  metrics?.prometheus.observeRuntime(runtime);
  const metricsServer = metrics
    ? await serveMetrics(metrics).catch((error: unknown) => closing(runtime)(explainListenError(error, listeners)))
    : undefined;
  logFields["runtime_id"] = runtime.runtimeId;
  const server = await startRuntimeServer({
    runtime,
    host: values.host,
    port,
    ...(http1Port !== undefined ? { http1Port } : {}),
    ...(token !== undefined ? { token } : {}),
    ...(tls !== undefined ? { tls } : {}),
    ...(metrics ? { interceptors: [metrics.prometheus.rpcInterceptor] } : {}),
    allowedHosts,
    maxConcurrentStreams,
    ...(keepalive ? { keepalive } : {}),
    logger,
  }).catch(async (error: unknown) => {
    await metricsServer?.close();
    await runtime.close();
    throw error instanceof ServerConfigError ? new UsageError(error.message) : explainListenError(error, listeners);
  });
  // Handlers first: a supervisor may signal as soon as it reads the listening
  // line, and a signal with no listener kills the process without draining.
  const stopped = new Promise<ShutdownOutcome>((resolve) => {
    onShutdownSignal(logger, (signal, cut) => {
      logger.info("shutting down", { signal, grace_ms: graceMs });
      void closeForShutdown({ server, runtime, after: () => metricsServer?.close(), logger }, graceMs, cut).then(resolve);
    });
  });
  process.stdout.write(listeningLine(tls !== undefined, server.h2Address, server.http1Address, runtime.runtimeId));
  // The listening line's words: under TLS the browser port is no plain HTTP/1.1 port.
  logger.info("serving", {
    [tls ? "https" : "h2c"]: server.h2Address,
    [tls ? "https-browser" : "http1"]: server.http1Address,
    runtime_id: runtime.runtimeId,
  });
  const outcome = await stopped;
  if (!(await tracing.shutdown())) logger.warn("tracing: spans not exported before exit (collector failed or too slow)");
  logStopped(logger, outcome);
  return outcome;
}

/**
 * The process's pino logger, configured by WORKER_RUNTIME_LOG_LEVEL and
 * WORKER_RUNTIME_LOG_PAYLOADS; `fields` go on every line (the runtime id
 * once the runtime exists).
 */
export function processLogger(): { logger: Logger; fields: Record<string, string> } {
  const fields: Record<string, string> = {};
  try {
    return { logger: createPinoLogger({ ...logConfigFromEnv(), process: fields }), fields };
  } catch (error) {
    throw error instanceof LogConfigError ? new UsageError(error.message) : error;
  }
}

/** The flags {@link hostedRuntime} reads. */
type HostedRuntimeFlags = Parameters<typeof backendFromFlags>[0] &
  Parameters<typeof operatorTimeoutsFromFlags>[0] & {
    "secrets-file"?: string;
    "runtime-id"?: string;
    "data-dir"?: string;
    "shutdown-flush-ms"?: string;
  };

/**
 * The runtime a `serve` or `backend` process hosts: execution backend, host
 * secrets, id, and the file store under --data-dir (memory without it).
 */
export async function hostedRuntime(values: HostedRuntimeFlags, logger: Logger, metrics?: RuntimeMetrics): Promise<Runtime> {
  const flushTimeoutMs = parseFlushMs(values["shutdown-flush-ms"] ?? "5000");
  const { hostPathTimeoutMs } = operatorTimeoutsFromFlags(values);
  const execution = await executionOptions(values);
  const secrets = readSecrets(values["secrets-file"]);
  let runtimeRef: Runtime | undefined;
  const runtimeOptions: RuntimeOptions = {
    logger,
    ...(metrics ? { metrics } : {}),
    ...execution,
    secrets,
    limits: { flushTimeoutMs, ...(hostPathTimeoutMs !== undefined ? { hostPathTimeoutMs } : {}) },
    ...(values["runtime-id"] !== undefined ? { runtimeId: values["runtime-id"] } : {}),
    ...(values["data-dir"] !== undefined
      ? {
          store: createFileStore({
            dataDir: values["data-dir"],
            ...(metrics ? { metrics } : {}),
            // Damage found by a read after start-up quarantines that worker.
            onCorruption: (workerId, message, hostDetail) => runtimeRef?.reportCorruption(workerId, message, hostDetail),
          }),
        }
      : {}),
  };
  const runtime = await createRuntime(runtimeOptions).catch((error: unknown) => {
    // --runtime-id and --data-dir name different runtimes: the command line's to fix (exit 2).
    if (error instanceof StoreConflictError) throw new UsageError(error.message);
    // Roots that overlap on the host (or one that does not answer): checked once, by the runtime.
    if (error instanceof WorkspaceRootsError) throw new UsageError(`--workspace-root: ${error.message}`);
    // A private path it cannot keep covered (or that does not answer within --host-path-timeout-ms): located as it is readied.
    if (error instanceof HiddenPathError) throw new UsageError(error.message);
    throw error;
  });
  runtimeRef = runtime;
  return runtime;
}

/** The execution backend and workspace roots from flags and OPENAI_* variables. */
async function executionOptions(
  values: Parameters<typeof backendFromFlags>[0],
): Promise<Pick<RuntimeOptions, "executionBackend" | "workspaceRoots">> {
  try {
    return { executionBackend: await backendFromFlags(values), workspaceRoots: workspaceRootsFromFlags(values["workspace-root"]) };
  } catch (error) {
    throw error instanceof ExecutionConfigError ? new UsageError(error.message) : error;
  }
}

/**
 * Tracing as the OTEL_* variables ask (off by default; see
 * docs/tracing.md); `service.name` defaults to `serviceName`.
 */
export async function startTracing(serviceName: string): Promise<Tracing> {
  try {
    return await startTracingFromEnv(process.env, serviceName);
  } catch (error) {
    throw error instanceof TracingConfigError ? new UsageError(error.message) : error;
  }
}

/** The metrics --metrics-port asks for (undefined: off, nothing is kept). */
export async function readMetrics(values: { "metrics-port"?: string; "metrics-host"?: string }): Promise<ProcessMetrics | undefined> {
  try {
    return await processMetricsFromFlags(values);
  } catch (error) {
    throw error instanceof MetricsConfigError ? new UsageError(error.message) : error;
  }
}

/**
 * The listeners a server process opens, by the flag that chose each port,
 * refused at once when two share a port (so a taken port is another program's).
 */
export function portFlags(host: string, port: number, http1Port: number | undefined, metrics: ProcessMetrics | undefined): PortFlag[] {
  const listeners: PortFlag[] = [{ flag: "--port", host, port }];
  if (http1Port !== undefined) listeners.push({ flag: "--http1-port", host, port: http1Port });
  if (metrics !== undefined) listeners.push({ flag: "--metrics-port", host: metrics.listen.host, port: metrics.listen.port });
  checkDistinctPorts(listeners);
  return listeners;
}

/** Closes the runtime when a later start-up step fails, then rethrows. */
export function closing(runtime: Runtime): (error: unknown) => Promise<never> {
  return async (error) => {
    await runtime.close();
    throw error;
  };
}

/** Host secrets from --secrets-file and WORKER_RUNTIME_SECRET_* variables. */
function readSecrets(file: string | undefined): Map<string, string> {
  try {
    return loadHostSecrets(file);
  } catch (error) {
    throw error instanceof SecretsConfigError ? new UsageError(error.message) : error;
  }
}
