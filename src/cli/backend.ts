import { parseArgs } from "node:util";
import {
  BackendConfigError,
  type BundleCatalog,
  createBackend,
  loadBackendConfig,
  loadBundleDir,
  type RemoteRuntimeSpec,
} from "../backend/index.js";
import { createStaticFilesHandler } from "../console/index.js";
import { ServerConfigError, startRuntimeServer } from "../server/index.js";
import { EXECUTION_OPTIONS, EXECUTION_USAGE } from "./execution-config.js";
import { hostedRuntime, parseGraceMs, processLogger, parsePort, RUNTIME_HOST_OPTIONS, readTls, readToken, UsageError } from "./serve.js";

export const BACKEND_USAGE = `usage: worker-runtime backend [--host 127.0.0.1] [--port 7080] [--http1-port N]
                              [--config backend.json] [--data-dir DIR] [--runtime-id ID]
                              [--token-file PATH] [--tls-cert PATH --tls-key PATH] [--bundles-dir DIR]
  --config       remote runtimes, JSON: {"runtimes": [{"id": "rt-a", "url": "http://host:7070",
                 "tokenFile": "a.token" | "tokenEnv": "RT_A_TOKEN", "caFile": "ca.pem"}]}
                 (more can be added at run time through RuntimeRegistry.AddRuntime)
  --bundles-dir  config bundles, one JSON file each (proto3 JSON of ConfigBundle; digest computed if absent,
                 checked if present); pushed to a runtime when CreateWorker selects one it lacks
  --data-dir     the embedded runtime keeps its state in DIR (else in memory)
  --runtime-id   fixed id of the embedded runtime
  --token-file   bearer token clients must send (or WORKER_RUNTIME_TOKEN); required off loopback
  --console DIR  also serve the web console's built files from DIR (needs --http1-port; as npm start does)
  --fanout-timeout-ms  deadline of each runtime in a ListWorkers across runtimes (default 2000)
  --host, --port, --http1-port, --tls-cert, --tls-key, --shutdown-grace-ms, --secrets-file  as for serve
  logs: WORKER_RUNTIME_LOG_LEVEL and WORKER_RUNTIME_LOG_PAYLOADS as for serve
${EXECUTION_USAGE}`;

/**
 * \`worker-runtime backend\`: an embedded runtime plus the remote runtimes of
 * --config behind one API, served on the same listeners (and with the same
 * auth, limits and error mapping) as \`serve\`.
 */
export async function backend(argv: string[]): Promise<void> {
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
    },
    strict: true,
    allowPositionals: false,
  });
  if (values.help) {
    process.stdout.write(`${BACKEND_USAGE}\n`);
    return;
  }
  const { logger, fields: logFields } = processLogger();
  const graceMs = parseGraceMs(values["shutdown-grace-ms"]);
  const fanoutTimeoutMs = Number(values["fanout-timeout-ms"]);
  if (!Number.isSafeInteger(fanoutTimeoutMs) || fanoutTimeoutMs <= 0)
    throw new UsageError("--fanout-timeout-ms must be a whole number of milliseconds > 0");
  const token = readToken(values["token-file"]);
  const tls = readTls(values["tls-cert"], values["tls-key"]);
  // Console hook (issue 11): browsers speak HTTP/1.1 to the console's port.
  if (values.console !== undefined && values["http1-port"] === undefined) throw new UsageError("--console needs --http1-port");
  let remotes: RemoteRuntimeSpec[] = [];
  let bundles: BundleCatalog = new Map();
  try {
    if (values.config !== undefined) remotes = loadBackendConfig(values.config);
    if (values["bundles-dir"] !== undefined) bundles = loadBundleDir(values["bundles-dir"]);
  } catch (error) {
    throw error instanceof BackendConfigError ? new UsageError(error.message) : error;
  }
  const runtime = await hostedRuntime(values, logger);
  logFields["runtime_id"] = runtime.runtimeId;
  if (remotes.some((remote) => remote.runtimeId === runtime.runtimeId)) {
    await runtime.close();
    throw new UsageError(`--config names the embedded runtime's id "${runtime.runtimeId}"`);
  }
  const service = createBackend({ runtime, remotes, logger, fanoutTimeoutMs, bundles });
  const server = await startRuntimeServer({
    runtime,
    routes: service.routes,
    host: values.host,
    port: parsePort("--port", values.port),
    ...(values["http1-port"] !== undefined ? { http1Port: parsePort("--http1-port", values["http1-port"]) } : {}),
    ...(token !== undefined ? { token } : {}),
    ...(tls !== undefined ? { tls } : {}),
    ...(values.console !== undefined ? { fallback: createStaticFilesHandler(values.console) } : {}),
    logger,
  }).catch(async (error: unknown) => {
    service.close();
    await runtime.close();
    throw error instanceof ServerConfigError ? new UsageError(error.message) : error;
  });
  const stopped = new Promise<void>((resolve) => {
    const shutdown = (signal: string): void => {
      logger.info("shutting down", { signal, grace_ms: graceMs });
      server
        .close(graceMs)
        .catch((error: unknown) => logger.error("shutdown failed", { cause: String(error) }))
        .finally(() => {
          service.close();
          resolve();
        });
    };
    process.once("SIGTERM", () => shutdown("SIGTERM"));
    process.once("SIGINT", () => shutdown("SIGINT"));
  });
  const http1 = server.http1Address ? ` http1=${server.http1Address}` : "";
  const main = tls ? `https=${server.h2Address}` : `h2c=${server.h2Address}`;
  process.stdout.write(`worker-runtime listening ${main}${http1} runtime_id=${runtime.runtimeId}\n`);
  if (values.console !== undefined) process.stdout.write(`console ready at ${tls ? "https" : "http"}://${server.http1Address}/\n`);
  logger.info("backend serving", {
    h2c: server.h2Address,
    http1: server.http1Address,
    runtime_id: runtime.runtimeId,
    remotes: remotes.length,
    bundles: bundles.size,
  });
  await stopped;
  logger.info("stopped");
}
