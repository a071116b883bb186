// What `npm start` runs: `worker-runtime backend` with the console's defaults.
import { parsePort } from "../cli/host-flags.js";
import { UsageError } from "../cli/usage-error.js";

/** The console's port when `npm start` is given none (HTTP/1.1, and HTTP/2 under TLS: what browsers speak). */
export const DEFAULT_CONSOLE_PORT = 8080;
/** The Backend's h2c port for gRPC clients (grpcurl, generated clients) under `npm start`. */
export const DEFAULT_GRPC_PORT = 7080;
/** Where `npm start` keeps the embedded runtime's state, relative to the working directory (git-ignored). */
export const DEFAULT_DATA_DIR = "data";

/** npm start's name for a backend flag: its --port is the backend's --http1-port, its --grpc-port the backend's --port. */
export function startFlagName(backendFlag: string): string {
  if (backendFlag === "--http1-port") return "--port";
  if (backendFlag === "--port") return "--grpc-port";
  return backendFlag;
}

/**
 * The arguments `npm start` hands to `worker-runtime backend`: the console
 * on `--port` (default 8080) and gRPC on `--grpc-port` (default 7080), the
 * file store under ./data, the built bundle in dist/web. Any other backend
 * flag passes through unchanged (e.g. `--openai-base-url`, `--config`).
 */
export function backendArgs(argv: readonly string[], bundleDir: string): string[] {
  const out: string[] = [];
  // Backend flag -> the name the user typed for it.
  const given = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? "";
    const eq = arg.indexOf("=");
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    // Checked here, where the flag still has the name the user typed; the backend would name the renamed one.
    if (name === "--port" || name === "--grpc-port") parsePort(name, eq > 0 ? arg.slice(eq + 1) : (argv[i + 1] ?? ""));
    const renamed = name === "--port" ? "--http1-port" : name === "--grpc-port" ? "--port" : name;
    // --http1-port and npm start's --port are one flag to the backend, where the last would silently win.
    const typed = given.get(renamed);
    if (typed !== undefined && typed !== name) {
      const [first, second] = [typed, name].sort();
      throw new UsageError(
        `${first} and ${second} both set the console's port (npm start's --port is the backend's --http1-port): give only --port`,
      );
    }
    given.set(renamed, name);
    if (eq > 0) out.push(`${renamed}=${arg.slice(eq + 1)}`);
    else out.push(renamed);
  }
  if (!given.has("--http1-port")) out.push("--http1-port", String(DEFAULT_CONSOLE_PORT));
  if (!given.has("--port")) out.push("--port", String(DEFAULT_GRPC_PORT));
  if (!given.has("--data-dir")) out.push("--data-dir", DEFAULT_DATA_DIR);
  if (!given.has("--console")) out.push("--console", bundleDir);
  return out;
}
