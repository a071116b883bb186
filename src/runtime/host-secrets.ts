import { Code } from "@connectrpc/connect";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import type { Profile } from "../../gen/worker_runtime/v1/profile_pb.js";
import { invalidArgument, RuntimeError } from "./errors.js";

/**
 * Secret names: an identifier, so that a name maps one-to-one onto an
 * environment variable (`WORKER_RUNTIME_SECRET_<name>`).
 */
const SECRET_NAME = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;

/**
 * The secrets of this runtime's host, by name (SPEC §6.4). Config bundles
 * only name secrets; each host maps the names to values in its own
 * configuration (`serve --secrets-file`, `WORKER_RUNTIME_SECRET_<NAME>`).
 * Values go to the execution backend of a run and nowhere else: never into
 * an error, event, transcript, response or log line.
 */
export type HostSecrets = ReadonlyMap<string, string>;

/** Checks the shape of a secret name. */
export function checkSecretName(field: string, name: string): string {
  if (!SECRET_NAME.test(name))
    throw invalidArgument(field, "must be a secret name: 1-64 characters of [A-Za-z0-9_], not starting with a digit");
  return name;
}

/**
 * The values of every secret a profile names, or FAILED_PRECONDITION +
 * SECRET_NOT_FOUND naming the first one this host lacks (the name only).
 */
export function resolveSecrets(profile: Profile, secrets: HostSecrets): Map<string, string> {
  const resolved = new Map<string, string>();
  for (const name of profile.secretNames) {
    const value = secrets.get(name);
    if (value === undefined) {
      throw new RuntimeError(
        Code.FailedPrecondition,
        ErrorReason.SECRET_NOT_FOUND,
        `secret "${name}" named by profile "${profile.name}" is not configured on this runtime's host`,
        { secret: name, profile: profile.name },
      );
    }
    resolved.set(name, value);
  }
  return resolved;
}
