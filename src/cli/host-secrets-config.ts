import { CONFIG_FILE_MAX_BYTES, OperatorFileError, readOperatorFileSync } from "../files/index.js";
import { checkSecretName } from "../runtime/index.js";

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
 * Every entry's name must be one a bundle can name (checkSecretName) and its
 * value non-empty. Errors name the file's problem, never a value.
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
    // The mode is the file read's own (fstat on the open file), not a look taken before.
    const read = readOperatorFileSync("--secrets-file", file, CONFIG_FILE_MAX_BYTES);
    mode = read.mode;
    text = read.bytes.toString("utf8");
  } catch (error) {
    if (error instanceof OperatorFileError) throw new SecretsConfigError(error.message);
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
    const shown = JSON.stringify(name.slice(0, 64));
    if (typeof value !== "string") throw new SecretsConfigError(`--secrets-file: the value of ${shown} is not a string`);
    // An entry no bundle can name, or an empty key, would only surface as a provider's 401 or a
    // SECRET_NOT_FOUND far from this file: refuse it here, by name.
    try {
      checkSecretName("name", name);
    } catch {
      throw new SecretsConfigError(
        `--secrets-file: ${shown} is not a secret name a bundle can use (1-64 characters of [A-Za-z0-9_], not starting with a digit)`,
      );
    }
    if (value === "") throw new SecretsConfigError(`--secrets-file: the value of ${shown} is empty`);
    secrets.set(name, value);
  }
  return secrets;
}
