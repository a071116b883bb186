import { readFileSync, statSync } from "node:fs";

/** Prefix of the environment variables that define host secrets. */
export const SECRET_ENV_PREFIX = "WORKER_RUNTIME_SECRET_";

/** The host's secrets cannot be read as configured. */
export class SecretsConfigError extends Error {
  override readonly name = "SecretsConfigError";
}

/**
 * The host secrets config bundles name (SPEC §6.4): `WORKER_RUNTIME_SECRET_<NAME>`
 * variables, then a JSON file `{ "<NAME>": "<value>", ... }` (its entries win).
 * The file must be readable by its owner only (mode 0600 or stricter): a
 * group- or world-readable one is refused, as ssh refuses a loose key.
 * Errors name the file's problem, never a value.
 */
export function loadHostSecrets(file: string | undefined, env: NodeJS.ProcessEnv = process.env): Map<string, string> {
  const secrets = new Map<string, string>();
  for (const [key, value] of Object.entries(env)) {
    if (key.startsWith(SECRET_ENV_PREFIX) && key.length > SECRET_ENV_PREFIX.length && value !== undefined) {
      secrets.set(key.slice(SECRET_ENV_PREFIX.length), value);
    }
  }
  if (file === undefined) return secrets;
  let mode: number;
  let text: string;
  try {
    mode = statSync(file).mode;
    text = readFileSync(file, "utf8");
  } catch (error) {
    throw new SecretsConfigError(`cannot read --secrets-file: ${(error as NodeJS.ErrnoException).code ?? "error"}`);
  }
  if ((mode & 0o077) !== 0) {
    throw new SecretsConfigError(
      `--secrets-file is readable or writable by group or others (mode ${(mode & 0o777).toString(8)}); chmod 600 it`,
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new SecretsConfigError("--secrets-file is not JSON: expected an object of secret names to string values");
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new SecretsConfigError("--secrets-file must hold a JSON object of secret names to string values");
  }
  for (const [name, value] of Object.entries(parsed)) {
    if (typeof value !== "string") throw new SecretsConfigError(`--secrets-file: the value of "${name.slice(0, 64)}" is not a string`);
    secrets.set(name, value);
  }
  return secrets;
}
