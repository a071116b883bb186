import { dirname, resolve } from "node:path";
import { CONFIG_FILE_MAX_BYTES, OperatorFileError, readOperatorFileSync, TOKEN_FILE_MAX_BYTES } from "../files/index.js";
import type { RemoteRuntimeSpec } from "./backend.js";
import { caBundleProblem } from "./ca-bundle.js";

/** Thrown for a config file the user must fix; the message names the entry, never a token. */
export class BackendConfigError extends Error {
  override readonly name = "BackendConfigError";
}

const RUNTIME_ID = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * Reads `backend.json`:
 * `{"runtimes": [{"id", "url", "tokenFile"?, "tokenEnv"?, "caFile"?}]}`.
 * Relative file names are resolved against the config file's directory; a
 * caFile must be PEM certificates for an https:// url (ca-bundle.ts).
 * Tokens are read again before every connection attempt, so rotating a
 * token file needs no restart; a token that cannot be read at start is an
 * error, one that disappears later keeps the last value.
 */
export function loadBackendConfig(file: string, env: NodeJS.ProcessEnv = process.env): RemoteRuntimeSpec[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readConfigFile("--config", file, CONFIG_FILE_MAX_BYTES).toString("utf8"));
  } catch (error) {
    if (error instanceof BackendConfigError) throw error;
    throw new BackendConfigError(
      `cannot read --config: ${error instanceof SyntaxError ? "not valid JSON" : ((error as NodeJS.ErrnoException).code ?? "error")}`,
    );
  }
  const runtimes = isObject(parsed) ? parsed["runtimes"] : undefined;
  if (!Array.isArray(runtimes)) throw new BackendConfigError('--config must hold {"runtimes": [...]}');
  const base = dirname(resolve(file));
  const seen = new Set<string>();
  return runtimes.map((entry: unknown, index) => {
    const where = `--config runtimes[${index}]`;
    if (!isObject(entry)) throw new BackendConfigError(`${where} must be an object`);
    const { id, url, tokenFile, tokenEnv, caFile } = entry;
    if (typeof id !== "string" || !RUNTIME_ID.test(id)) throw new BackendConfigError(`${where}.id must be 1-64 of [A-Za-z0-9._-]`);
    if (seen.has(id)) throw new BackendConfigError(`${where}.id "${id}" is used twice`);
    seen.add(id);
    if (typeof url !== "string" || !/^https?:\/\//.test(url) || !URL.canParse(url)) {
      throw new BackendConfigError(`${where}.url must be an http:// or https:// URL`);
    }
    if (tokenFile !== undefined && tokenEnv !== undefined)
      throw new BackendConfigError(`${where}: tokenFile and tokenEnv exclude each other`);
    const spec: RemoteRuntimeSpec = { runtimeId: id, url };
    if (typeof tokenFile === "string") {
      spec.token = tokenFileReader(resolve(base, tokenFile), `${where}.tokenFile`);
    } else if (typeof tokenEnv === "string") {
      if (!env[tokenEnv]?.trim()) throw new BackendConfigError(`${where}.tokenEnv: ${tokenEnv} is not set`);
      spec.token = () => env[tokenEnv]?.trim() || undefined;
    } else if (tokenFile !== undefined || tokenEnv !== undefined) {
      throw new BackendConfigError(`${where}: tokenFile and tokenEnv must be strings`);
    }
    if (caFile !== undefined) {
      if (typeof caFile !== "string") throw new BackendConfigError(`${where}.caFile must be a string`);
      try {
        spec.ca = readConfigFile(`${where}.caFile`, resolve(base, caFile), CONFIG_FILE_MAX_BYTES);
      } catch (error) {
        if (error instanceof BackendConfigError) throw error;
        throw new BackendConfigError(`cannot read ${where}.caFile: ${(error as NodeJS.ErrnoException).code ?? "error"}`);
      }
      // Checked as AddRuntime checks ca_certificate_pem: a key or junk would be held, unused, every connection "untrusted".
      const problem = caBundleProblem(spec.ca.toString("utf8"), url);
      if (problem !== undefined) throw new BackendConfigError(`${where}.caFile ${problem}`);
    }
    return spec;
  });
}

/**
 * The host paths of the token files `backend.json` names (resolved as
 * {@link loadBackendConfig} resolves them), so that sandboxed commands can
 * be kept from reading them. Empty when the file cannot be read or parsed:
 * {@link loadBackendConfig} reports that.
 */
export function backendConfigTokenFiles(file: string): string[] {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readConfigFile("--config", file, CONFIG_FILE_MAX_BYTES).toString("utf8"));
  } catch {
    return [];
  }
  const runtimes = isObject(parsed) ? parsed["runtimes"] : undefined;
  if (!Array.isArray(runtimes)) return [];
  const base = dirname(resolve(file));
  return runtimes.flatMap((entry: unknown) =>
    isObject(entry) && typeof entry["tokenFile"] === "string" ? [resolve(base, entry["tokenFile"])] : [],
  );
}

/**
 * Reads a token file now (a {@link BackendConfigError} if it is unreadable or
 * empty) and again on every call, so a rotated file needs no restart; a later
 * read that fails keeps the last token.
 */
export function tokenFileReader(path: string, what: string): () => string {
  let last = readTokenFile(path, what);
  return () => {
    try {
      last = readTokenFile(path, what);
    } catch {
      // keep the last token read
    }
    return last;
  };
}

function readTokenFile(path: string, what: string): string {
  let token: string;
  try {
    token = readConfigFile(what, path, TOKEN_FILE_MAX_BYTES).toString("utf8").trim();
  } catch (error) {
    if (error instanceof BackendConfigError) throw error;
    throw new BackendConfigError(`cannot read ${what}: ${(error as NodeJS.ErrnoException).code ?? "error"}`);
  }
  if (token === "") throw new BackendConfigError(`${what} is empty`);
  return token;
}

/** A file `backend.json` or a flag names, read within `maxBytes`; a FIFO or an over-bound file is a {@link BackendConfigError}. */
function readConfigFile(what: string, path: string, maxBytes: number): Buffer {
  try {
    return readOperatorFileSync(what, path, maxBytes).bytes;
  } catch (error) {
    throw error instanceof OperatorFileError ? new BackendConfigError(error.message) : error;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
