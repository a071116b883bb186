import { CONFIG_FILE_MAX_BYTES, OperatorFileError, readOperatorFileSync, TOKEN_FILE_MAX_BYTES } from "../files/index.js";
import { isHeaderSafeToken } from "../server/index.js";
import { operatorTimeoutsFromFlags, wholeMs } from "./operator-timeouts.js";
import { checkTlsPair } from "./tls-pair.js";
import { UsageError } from "./usage-error.js";

/**
 * The listener, auth and shutdown flags every hosting process (`serve`,
 * `backend`) reads the same way, checked before anything opens (data dir,
 * metrics listener), so a bad value ends the process without holding them.
 */
export interface HostFlags {
  graceMs: number;
  maxConcurrentStreams: number;
  keepalive: ReturnType<typeof operatorTimeoutsFromFlags>["keepalive"];
  port: number;
  http1Port: number | undefined;
  token: string | undefined;
  tls: { cert: Buffer; key: Buffer } | undefined;
  allowedHosts: string[];
}

/** The values {@link hostFlags} reads (RUNTIME_HOST_OPTIONS plus the process's own `--port`). */
type HostFlagValues = Parameters<typeof operatorTimeoutsFromFlags>[0] & {
  port: string;
  "http1-port"?: string;
  "allow-host"?: string[];
  "token-file"?: string;
  "tls-cert"?: string;
  "tls-key"?: string;
  "shutdown-grace-ms": string;
  "max-concurrent-streams": string;
};

export function hostFlags(values: HostFlagValues): HostFlags {
  const graceMs = parseGraceMs(values["shutdown-grace-ms"]);
  const maxConcurrentStreams = parseMaxConcurrentStreams(values["max-concurrent-streams"]);
  const { keepalive } = operatorTimeoutsFromFlags(values);
  const port = parsePort("--port", values.port);
  const http1Port = values["http1-port"] !== undefined ? parsePort("--http1-port", values["http1-port"]) : undefined;
  return {
    graceMs,
    maxConcurrentStreams,
    keepalive,
    port,
    http1Port,
    token: readToken(values["token-file"]),
    tls: readTls(values["tls-cert"], values["tls-key"]),
    allowedHosts: parseAllowedHosts(values["allow-host"]),
  };
}

export function parseGraceMs(value: string): number {
  return wholeMs("--shutdown-grace-ms", value, 0);
}

/**
 * --max-concurrent-streams: 16 to 2^31-1. A Backend keeps two streams open on
 * each runtime for itself (health and the shared WatchRuntime), so a lower
 * limit would leave its calls waiting (HTTP/2 allows 2^32-1, Node's default).
 */
export function parseMaxConcurrentStreams(value: string): number {
  const streams = /^\d{1,10}$/.test(value) ? Number(value) : Number.NaN;
  if (!(streams >= MIN_CONCURRENT_STREAMS && streams <= 2 ** 31 - 1))
    throw new UsageError(`--max-concurrent-streams must be a whole number from ${MIN_CONCURRENT_STREAMS} to 2147483647`);
  return streams;
}

/** The least --max-concurrent-streams: a Backend's own two streams per runtime, and room for its calls. */
const MIN_CONCURRENT_STREAMS = 16;

/** --shutdown-flush-ms: the runtime's flushTimeoutMs (how long its close waits for the store). */
export function parseFlushMs(value: string): number {
  return wholeMs("--shutdown-flush-ms", value, 1);
}

export function parsePort(flag: string, value: string): number {
  // Decimal digits only: Number() reads "" and " " as 0 (any free port) and "0x1F90" as 8080.
  const port = /^\d{1,5}$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new UsageError(`${flag} must be a port number 0-65535`);
  return port;
}

/** The --allow-host names: host names or IP addresses, without scheme or port. */
export function parseAllowedHosts(names: readonly string[] | undefined): string[] {
  return (names ?? []).map((name) => {
    if (!/^(?:[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?|\[[0-9A-Fa-f:.]+\])$/.test(name))
      throw new UsageError(`--allow-host must be a host name without scheme or port (got "${name}")`);
    return name.toLowerCase();
  });
}

/** Reads the TLS certificate and key; both or neither. */
export function readTls(certFile: string | undefined, keyFile: string | undefined): { cert: Buffer; key: Buffer } | undefined {
  if (certFile === undefined && keyFile === undefined) return undefined;
  if (certFile === undefined || keyFile === undefined) throw new UsageError("--tls-cert and --tls-key go together");
  const read = (flag: string, file: string): Buffer => {
    try {
      return readOperatorFileSync(flag, file, CONFIG_FILE_MAX_BYTES).bytes;
    } catch (error) {
      if (error instanceof OperatorFileError) throw new UsageError(error.message);
      throw new UsageError(`cannot read ${flag}: ${(error as NodeJS.ErrnoException).code ?? "error"}`);
    }
  };
  const pair = { cert: read("--tls-cert", certFile), key: read("--tls-key", keyFile) };
  checkTlsPair(pair, certFile, keyFile);
  return pair;
}

/** The token comes from a file or the environment, never a flag visible in `ps`. */
export function readToken(tokenFile: string | undefined): string | undefined {
  if (tokenFile !== undefined) {
    let token: string;
    try {
      token = readOperatorFileSync("--token-file", tokenFile, TOKEN_FILE_MAX_BYTES).bytes.toString("utf8").trim();
    } catch (error) {
      if (error instanceof OperatorFileError) throw new UsageError(error.message);
      throw new UsageError(`cannot read --token-file: ${(error as NodeJS.ErrnoException).code ?? "error"}`);
    }
    if (token === "") throw new UsageError("--token-file is empty");
    return sendableToken(token);
  }
  const fromEnv = process.env["WORKER_RUNTIME_TOKEN"]?.trim();
  return fromEnv ? sendableToken(fromEnv) : undefined;
}

/** A token a client can send: an authorization header takes visible ASCII only, so any other token would refuse everyone. */
function sendableToken(token: string): string {
  if (isHeaderSafeToken(token)) return token;
  throw new UsageError(
    "the token (--token-file or WORKER_RUNTIME_TOKEN) has characters an HTTP header cannot carry (a line break, a control or a non-ASCII character)",
  );
}
