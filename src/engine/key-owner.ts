import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import type { Profile } from "../../gen/worker_runtime/v1/profile_pb.js";
import type { RunOutcome, RunRequest } from "../runtime/index.js";

/**
 * Whose provider key a run sent: a bundle profile's own (by its secret's
 * name, never its value), the runtime's (OPENAI_API_KEY), or none (keyless).
 */
export type KeyOwner = { kind: "profile"; profile: string; bundleId: string; secretName: string } | { kind: "runtime" } | { kind: "none" };

/** Whose key a run of `profile` sends: its own when `ownKey` is used, else the runtime's unless keyless. */
export function keyOwnerOf(request: RunRequest, profile: Profile, ownKey: boolean, keyless: boolean): KeyOwner {
  if (ownKey) {
    const source = request.worker.profile?.source;
    const bundleId = source?.case === "bundle" ? source.value.bundleId : "";
    return { kind: "profile", profile: profile.name, bundleId, secretName: profile.providerApiKeySecret };
  }
  return keyless ? { kind: "none" } : { kind: "runtime" };
}

/**
 * A PROVIDER_AUTH_FAILED outcome that says whose key was refused, so the
 * operator fixes the right one: with a profile's own key in use, the
 * runtime's key (and its provider.auth_failed diagnostic) would otherwise
 * look broken when it is a team's host secret. Any other outcome is as is.
 */
export function namingKeyOwner(outcome: RunOutcome, owner: KeyOwner): RunOutcome {
  if (outcome.kind !== "failed" || outcome.reason !== ErrorReason.PROVIDER_AUTH_FAILED) return outcome;
  const metadata: Record<string, string> = { ...outcome.metadata, key_source: owner.kind };
  let whose: string;
  if (owner.kind === "profile") {
    const bundle = owner.bundleId === "" ? "" : ` of config bundle "${owner.bundleId}"`;
    whose = `the provider refused the key of profile "${owner.profile}"${bundle} (host secret ${owner.secretName}; fix that secret)`;
    Object.assign(
      metadata,
      { profile: owner.profile, secret_name: owner.secretName },
      owner.bundleId === "" ? {} : { bundle_id: owner.bundleId },
    );
  } else if (owner.kind === "runtime") {
    whose = "the provider refused the runtime's provider key (OPENAI_API_KEY)";
  } else {
    whose = "the provider wants a key, and this runtime sends none (keyless mode)";
  }
  return { ...outcome, message: `${whose}: ${outcome.message}`, metadata };
}
