import { create, toBinary } from "@bufbuild/protobuf";
import { cloneMessage } from "./message-clone.js";
import { createHash } from "node:crypto";
import { type ConfigBundle, ConfigBundleSchema, type Profile, ProfileSchema } from "../../gen/worker_runtime/v1/profile_pb.js";

/**
 * The canonical form of a config bundle (documented on ConfigBundle in
 * profile.proto): profiles sorted by name, every string list sorted with
 * repeats removed, unknown fields dropped. Profiles are looked up by name and
 * the lists are sets, so order carries no meaning; fixing it makes the same
 * content built in another order encode to the same bytes.
 */
export function canonicalBundle(bundle: ConfigBundle): ConfigBundle {
  const policies = bundle.policies;
  return create(ConfigBundleSchema, {
    bundleId: bundle.bundleId,
    digest: bundle.digest,
    profiles: bundle.profiles.map(canonicalProfile).sort((a, b) => compare(a.name, b.name)),
    ...(policies
      ? {
          policies: {
            allowedCapabilities: sortedSet(policies.allowedCapabilities),
            allowedWorkspaceRoots: sortedSet(policies.allowedWorkspaceRoots),
            ...(policies.shell ? { shell: { allowedPrograms: sortedSet(policies.shell.allowedPrograms) } } : {}),
            // Unset on a bundle made before mounts existed, so its digest is unchanged.
            allowedMountRoots: sortedSet(policies.allowedMountRoots),
            allowWritableMounts: policies.allowWritableMounts,
          },
        }
      : {}),
  });
}

/**
 * "sha256:<hex>" of the deterministic protobuf binary encoding of the
 * canonical bundle with `digest` cleared. protobuf-es writes fields in
 * declaration order (here also field-number order) and the canonical form
 * has no maps, so the bytes depend on the content only.
 */
export function bundleDigest(bundle: ConfigBundle): string {
  const canonical = canonicalBundle(bundle);
  canonical.digest = "";
  const bytes = toBinary(ConfigBundleSchema, canonical, { writeUnknownFields: false });
  return `sha256:${createHash("sha256").update(bytes).digest("hex")}`;
}

function canonicalProfile(profile: Profile): Profile {
  const copy = cloneMessage(ProfileSchema, profile);
  copy.$unknown = undefined;
  copy.tools = sortedSet(copy.tools);
  copy.approvalRequiredTools = sortedSet(copy.approvalRequiredTools);
  copy.secretNames = sortedSet(copy.secretNames);
  return copy;
}

function sortedSet(values: readonly string[]): string[] {
  return [...new Set(values)].sort(compare);
}

function compare(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
