import { UsageError } from "./usage-error.js";

/**
 * The flags of `serve`, `backend` and `npm start` whose value is a file or
 * directory. Node's path functions read "" as the current directory, so an
 * empty value would put the store (or a workspace root) there: refused.
 */
const PATH_FLAGS = [
  "data-dir",
  "token-file",
  "tls-cert",
  "tls-key",
  "secrets-file",
  "profiles",
  "config",
  "bundles-dir",
  "console",
  "discover-token-file",
] as const;

/**
 * Refuses an empty path-valued flag, and a `--workspace-root` of "" or
 * "NAME=", before anything opens (a bad command line: exit 2, naming the flag).
 */
export function refuseEmptyPaths(values: Partial<Record<(typeof PATH_FLAGS)[number], string>> & { "workspace-root"?: string[] }): void {
  for (const flag of PATH_FLAGS) if (values[flag] === "") throw new UsageError(`--${flag} must not be empty`);
  for (const root of values["workspace-root"] ?? []) {
    const eq = root.indexOf("=");
    if ((eq >= 0 ? root.slice(eq + 1) : root) === "") throw new UsageError("--workspace-root needs a directory (got an empty path)");
  }
}
