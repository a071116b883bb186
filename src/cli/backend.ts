import { MAX_TIMER_MS } from "../runtime/index.js";
import { parseArgs } from "node:util";
import {
  BackendConfigError,
  type BundleCatalog,
  BundleDir,
  createBackend,
  DnsDiscovery,
  type DnsDiscoveryOptions,
  loadBackendConfig,
  loadBundleDir,
  type RemoteRuntimeSpec,
  type RuntimeConnection,
  tokenFileReader,
} from "../backend/index.js";
import { createStaticFilesHandler } from "../console/index.js";
import { ServerConfigError, startRuntimeServer } from "../server/index.js";
import { closeForShutdown, logStopped, type ShutdownOutcome } from "./server-shutdown.js";
import { EXECUTION_OPTIONS, EXECUTION_USAGE } from "./execution-config.js";
import { hostFlags } from "./host-flags.js";
import { serveMetrics } from "./metrics-config.js";
import { refuseEmptyPaths } from "./path-flags.js";
import { onShutdownSignal } from "./shutdown-signals.js";
import { listeningLine } from "./listening-line.js";
import { checkPortsFree, explainListenError } from "./port-in-use.js";
import { closing, hostedRuntime, portFlags, processLogger, RUNTIME_HOST_OPTIONS, readMetrics, startTracing, UsageError } from "./serve.js";

export const BACKEND_USAGE = `usage: worker-runtime backend [--host 127.0.0.1] [--port 7080] [--http1-port N]
                              [--config backend.json] [--data-dir DIR] [--runtime-id ID]
                              [--token-file PATH] [--tls-cert PATH --tls-key PATH] [--bundles-dir DIR]
  --config       remote runtimes, JSON: {"runtimes": [{"id": "rt-a", "url": "http://host:7070",
                 "tokenFile": "a.token" | "tokenEnv": "RT_A_TOKEN", "caFile": "ca.pem"}]}
                 (more can be added at run time through RuntimeRegistry.AddRuntime)
  --bundles-dir  config bundles, one JSON file each (proto3 JSON of ConfigBundle; digest computed if absent,
                 checked if present); pushed to a runtime when CreateWorker selects one it lacks. A bad
                 file stops start-up; re-read (at most once a second) when CreateWorker names a bundle
                 the Backend lacks, and on SIGHUP: new and edited files add versions (old ones are
                 kept), bad ones are logged and skipped
  --data-dir     the embedded runtime keeps its state in DIR (else in memory)
  --runtime-id   fixed id of the embedded runtime
  --token-file   bearer token clients must send (or WORKER_RUNTIME_TOKEN); required off loopback
  --console DIR  also serve the web console's built files from DIR (needs --http1-port; as npm start does)
  --fanout-timeout-ms  deadline of each runtime in a ListWorkers across runtimes (default 2000)
  --discover-dns NAME  add and remove runtimes by the SRV records of NAME (a headless Service's named
                 port, e.g. _grpc._tcp.runtimes.NS.svc.cluster.local); the id is the target's first label
  --discover-interval-ms  time between lookups (default 5000)
  --discover-misses N     answers in a row without a runtime before it is removed (default 12)
  --discover-token-file   bearer token for discovered runtimes (re-read before each connection)
  --host, --port, --http1-port, --allow-host, --tls-cert, --tls-key, --shutdown-grace-ms, --shutdown-flush-ms,
  --max-concurrent-streams, --secrets-file, --host-path-timeout-ms (the embedded runtime's),
  --keepalive-interval-ms, --keepalive-timeout-ms (every client's connection)  as for serve
  --metrics-port, --metrics-host  as for serve; adds the health and call latency of each runtime
  logs: WORKER_RUNTIME_LOG_LEVEL and WORKER_RUNTIME_LOG_PAYLOADS as for serve
${EXECUTION_USAGE}`;

/**
 * \`worker-runtime backend\`: an embedded runtime plus the remote runtimes of
 * --config behind one API, served on the same listeners (and with the same
 * auth, limits and error mapping) as \`serve\`.
 * Resolves with how the shutdown ended once it has served and stopped
 * (undefined for --help).
 */
export async function backend(argv: string[]): Promise<ShutdownOutcome | undefined> {
  const { values } = parseArgs({
    args: argv,
    options: {
      ...RUNTIME_HOST_OPTIONS,
      ...EXECUTION_OPTIONS,
      port: { type: "string", default: "7080" },
      config: { type: "string" },
      "bundles-dir": { type: "string" },
      "fanout-timeout-ms": { type: "string", default: "2000" },
      console: { type: "string" },
      "discover-dns": { type: "string" },
      "discover-interval-ms": { type: "string", default: "5000" },
      "discover-misses": { type: "string", default: "12" },
      "discover-token-file": { type: "string" },
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    process.stdout.write(`${BACKEND_USAGE}\n`);
    return undefined;
  }
  refuseEmptyPaths(values);
  const { logger, fields: logFields } = processLogger();
  const { graceMs, maxConcurrentStreams, keepalive, port, http1Port, token, tls, allowedHosts } = hostFlags(values);
  const fanoutTimeoutMs = Number(values["fanout-timeout-ms"]);
  if (!Number.isSafeInteger(fanoutTimeoutMs) || fanoutTimeoutMs <= 0 || fanoutTimeoutMs > MAX_TIMER_MS)
    throw new UsageError(`--fanout-timeout-ms must be a whole number of milliseconds > 0 and <= ${MAX_TIMER_MS}`);
  // Console hook (issue 11): the console is served on the port browsers speak (HTTP/1.1; HTTP/2 too under TLS).
  if (values.console !== undefined && values["http1-port"] === undefined) throw new UsageError("--console needs --http1-port");
  let remotes: RemoteRuntimeSpec[] = [];
  let bundles: BundleCatalog = new Map();
  try {
    if (values.config !== undefined) remotes = loadBackendConfig(values.config);
    if (values["bundles-dir"] !== undefined) bundles = loadBundleDir(values["bundles-dir"]);
  } catch (error) {
    throw error instanceof BackendConfigError ? new UsageError(error.message) : error;
  }
  const discoveryConfig = discoveryFromFlags(values);
  const tracing = await startTracing("worker-runtime-backend");
  const metrics = await readMetrics(values);
  const listeners = portFlags(values.host, port, http1Port, metrics);
  await checkPortsFree(listeners);
  const runtime = await hostedRuntime(values, logger, metrics?.prometheus.runtime);
  logFields["runtime_id"] = runtime.runtimeId;
  if (remotes.some((remote) => remote.runtimeId === runtime.runtimeId)) {
    await runtime.close();
    throw new UsageError(`--config names the embedded runtime's id "${runtime.runtimeId}"`);
  }
  metrics?.prometheus.observeRuntime(runtime);
  let connections: () => Iterable<RuntimeConnection> = () => [];
  const runtimeInterceptors = metrics?.prometheus.observeBackend(() => connections());
  const bundlesDir = values["bundles-dir"];
  const heldBundles = new BundleDir({ initial: bundles, logger, ...(bundlesDir !== undefined ? { dir: bundlesDir } : {}) });
  // The operator's way to make the Backend read new or edited bundle files now (as nginx reloads).
  if (bundlesDir !== undefined) {
    process.on("SIGHUP", () => {
      logger.info("SIGHUP: re-reading --bundles-dir");
      void heldBundles.refresh();
    });
  }
  const service = createBackend({
    runtime,
    remotes,
    logger,
    fanoutTimeoutMs,
    bundles: heldBundles,
    ...(runtimeInterceptors ? { runtimeInterceptors } : {}),
  });
  connections = () => service.directory.sorted();
  const discovery = discoveryConfig
    ? new DnsDiscovery({
        ...discoveryConfig,
        directory: service.directory,
        addRemote: (spec) => service.addRemote(spec),
        repointRemote: (spec) => service.repointRemote(spec),
        logger,
      })
    : undefined;
  const metricsServer = metrics
    ? await serveMetrics(metrics).catch((error: unknown) => {
        service.close();
        return closing(runtime)(explainListenError(error, listeners));
      })
    : undefined;
  const server = await startRuntimeServer({
    runtime,
    routes: service.routes,
    host: values.host,
    port,
    ...(http1Port !== undefined ? { http1Port } : {}),
    ...(token !== undefined ? { token } : {}),
    ...(tls !== undefined ? { tls } : {}),
    ...(values.console !== undefined ? { fallback: createStaticFilesHandler(values.console) } : {}),
    ...(metrics ? { interceptors: [metrics.prometheus.rpcInterceptor] } : {}),
    allowedHosts,
    maxConcurrentStreams,
    ...(keepalive ? { keepalive } : {}),
    logger,
  }).catch(async (error: unknown) => {
    discovery?.stop();
    await metricsServer?.close();
    service.close();
    await runtime.close();
    throw error instanceof ServerConfigError ? new UsageError(error.message) : explainListenError(error, listeners);
  });
  const stopped = new Promise<ShutdownOutcome>((resolve) => {
    onShutdownSignal(logger, (signal, cut) => {
      logger.info("shutting down", { signal, grace_ms: graceMs });
      const after = async () => {
        discovery?.stop();
        service.close();
        await metricsServer?.close();
      };
      void closeForShutdown({ server, runtime, after, logger }, graceMs, cut).then(resolve);
    });
  });
  discovery?.start();
  process.stdout.write(listeningLine(tls !== undefined, server.h2Address, server.http1Address, runtime.runtimeId));
  if (values.console !== undefined) process.stdout.write(`console ready at ${tls ? "https" : "http"}://${server.http1Address}/\n`);
  logger.info("backend serving", {
    [tls ? "https" : "h2c"]: server.h2Address,
    [tls ? "https-browser" : "http1"]: server.http1Address,
    runtime_id: runtime.runtimeId,
    remotes: remotes.length,
    bundles: bundles.size,
  });
  const outcome = await stopped;
  if (!(await tracing.shutdown())) logger.warn("tracing: spans not exported before exit (collector failed or too slow)");
  logStopped(logger, outcome);
  return outcome;
}

/** The flags {@link discoveryFromFlags} reads. */
interface DiscoveryFlags {
  "discover-dns"?: string;
  "discover-interval-ms": string;
  "discover-misses": string;
  "discover-token-file"?: string;
}

/** The part of DNS discovery's options the --discover-* flags give (undefined without --discover-dns). */
type DiscoveryConfig = Pick<DnsDiscoveryOptions, "name" | "intervalMs" | "missesBeforeRemoval" | "token">;

/** Checks --discover-* before the runtime starts, so a bad flag leaves nothing to close. */
function discoveryFromFlags(values: DiscoveryFlags): DiscoveryConfig | undefined {
  const name = values["discover-dns"];
  if (name === undefined) {
    if (values["discover-token-file"] !== undefined) throw new UsageError("--discover-token-file needs --discover-dns");
    return undefined;
  }
  if (!/^[A-Za-z0-9_.-]{1,253}$/.test(name)) throw new UsageError("--discover-dns must be a DNS name");
  const intervalMs = Number(values["discover-interval-ms"]);
  if (!Number.isSafeInteger(intervalMs) || intervalMs < 100 || intervalMs > MAX_TIMER_MS)
    throw new UsageError(`--discover-interval-ms must be a whole number of milliseconds >= 100 and <= ${MAX_TIMER_MS}`);
  const misses = Number(values["discover-misses"]);
  if (!Number.isSafeInteger(misses) || misses < 1) throw new UsageError("--discover-misses must be a whole number >= 1");
  let token: (() => string) | undefined;
  try {
    if (values["discover-token-file"] !== undefined) token = tokenFileReader(values["discover-token-file"], "--discover-token-file");
  } catch (error) {
    throw error instanceof BackendConfigError ? new UsageError(error.message) : error;
  }
  return { name, intervalMs, missesBeforeRemoval: misses, ...(token ? { token } : {}) };
}
