#!/usr/bin/env node
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { ambiguousValueMessage } from "../cli/ambiguous-value.js";
import { backend } from "../cli/backend.js";
import { PortFlagError } from "../cli/port-in-use.js";
import { UsageError } from "../cli/serve.js";
import { backendArgs, DEFAULT_CONSOLE_PORT, DEFAULT_DATA_DIR, DEFAULT_GRPC_PORT, startFlagName } from "./start-args.js";

const START_USAGE = `usage: npm start -- [--port ${DEFAULT_CONSOLE_PORT}] [--grpc-port ${DEFAULT_GRPC_PORT}] [--data-dir ${DEFAULT_DATA_DIR}] [backend flags]
  --port is the console's HTTP/1.1 port and --grpc-port the h2c port for gRPC clients (they are the
  backend's --http1-port and --port below, so --http1-port beside --port is refused); every other
  flag is the backend's, unchanged.
  With --tls-cert PATH --tls-key PATH the console is served over https and HTTP/2, so a browser
  is not held to six connections (a watch per open tab) as it is over plain HTTP/1.1.`;

/** dist/web of this checkout: the same from src/console (tsx) and dist/console (built). */
const BUNDLE_DIR = fileURLToPath(new URL("../../dist/web/", import.meta.url));

/**
 * `npm start`: the Backend with its embedded runtime on the file store,
 * serving the console; prints "console ready at http://..." once it listens.
 */
/** Set once the Backend stopped (see src/cli/main.ts: then nothing may hold the process). */
let serverStopped = false;

async function start(argv: string[]): Promise<number> {
  if (!existsSync(`${BUNDLE_DIR}index.html`)) {
    process.stderr.write(`worker-runtime: the console is not built (no ${BUNDLE_DIR}index.html): run npm run build\n`);
    return 1;
  }
  // The backend's help follows, and its --port is another port: say what npm start's flags mean first.
  if (argv.includes("--help") || argv.includes("-h")) process.stdout.write(`${START_USAGE}\n\n`);
  try {
    const outcome = await backend(backendArgs(argv, BUNDLE_DIR));
    serverStopped = outcome !== undefined;
    // A failed shutdown (src/cli/server-shutdown.ts) exits 1, as `worker-runtime backend` does.
    return outcome === "failed" ? 1 : 0;
  } catch (error) {
    const usage =
      error instanceof UsageError || (error instanceof TypeError && "code" in error && String(error.code).startsWith("ERR_PARSE_ARGS"));
    // The backend names its own flags; the user typed npm start's.
    const message =
      error instanceof PortFlagError
        ? error.renamed(startFlagName)
        : (ambiguousValueMessage(error, argv) ?? (error instanceof Error ? error.message : String(error)));
    process.stderr.write(`worker-runtime: ${message}\n`);
    return usage ? 2 : 1;
  }
}

process.exitCode = await start(process.argv.slice(2));
if (serverStopped) process.exit();
