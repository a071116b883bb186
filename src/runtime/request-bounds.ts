import type { ConfigBundle } from "../../gen/worker_runtime/v1/profile_pb.js";
import type { CreateWorkerRequest } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { limitExceeded } from "./errors.js";
import type { Limits } from "./limits.js";

/**
 * The most entries of each repeated or map field of a request, checked by
 * count alone before anything works per entry. Why: a request is bounded
 * only by the read limit (maxMessageBytes, 4 MiB), and one short entry
 * repeated fills it with hundreds of thousands; every per-entry step after
 * decoding (the request_id fingerprint's encoding, a bundle's text walk,
 * size and digest) then held the event loop, and so every other client,
 * for seconds (4.4 s for one CreateWorker of 450,000 "fs.read"). Counting
 * first leaves such a request its decoding and nothing more. (ListWorkers'
 * filters are counted first by checkEnumList and checkLabels.)
 */
export const BUNDLE_BOUNDS = {
  /** Profiles in a config bundle. */
  profiles: 1_000,
  /** Each profile's tools, approval_required_tools and secret_names. */
  profileList: 1_024,
  /** A bundle's allowed_workspace_roots and allowed_mount_roots. */
  roots: 1_024,
  /** A bundle's shell.allowed_programs (a list made from a whole /usr/bin runs to a few thousand). */
  programs: 8_192,
} as const;

/**
 * Most capabilities a list may name. Far more than exist: a list may repeat
 * one (the runtime reads them as a set), but hundreds of thousands only cost.
 * The bounds here are generous on purpose: they also apply to bundles stored
 * before them, and cheap work over a few thousand entries is not what held
 * the event loop; hundreds of thousands was.
 */
export const MAX_CAPABILITY_ENTRIES = 64;

/** Refuses a list longer than `max` with INVALID_ARGUMENT + LIMIT_EXCEEDED naming `field` and the bound. */
function checkCount(field: string, count: number, max: number, what = "entries"): void {
  if (count > max) throw limitExceeded(field, max, `has ${count} ${what}; at most ${max}`);
}

/** CreateWorker's lists: capabilities, mounts and labels. */
export function checkCreateWorkerCounts(request: CreateWorkerRequest, limits: Pick<Limits, "maxMounts" | "maxLabels">): void {
  checkCount("capabilities", request.capabilities.length, MAX_CAPABILITY_ENTRIES, "capabilities");
  checkCount("mounts", request.mounts.length, limits.maxMounts, "mounts");
  checkCount("labels", Object.keys(request.labels).length, limits.maxLabels, "labels");
}

/** A config bundle's lists: its profiles, each profile's lists, and its policies' lists. */
export function checkBundleCounts(bundle: ConfigBundle): void {
  checkCount("bundle.profiles", bundle.profiles.length, BUNDLE_BOUNDS.profiles, "profiles");
  for (const [i, profile] of bundle.profiles.entries()) {
    const field = `bundle.profiles[${i}]`;
    checkCount(`${field}.tools`, profile.tools.length, BUNDLE_BOUNDS.profileList);
    checkCount(`${field}.approval_required_tools`, profile.approvalRequiredTools.length, BUNDLE_BOUNDS.profileList);
    checkCount(`${field}.secret_names`, profile.secretNames.length, BUNDLE_BOUNDS.profileList);
  }
  const policies = bundle.policies;
  if (!policies) return;
  checkCount("bundle.policies.allowed_capabilities", policies.allowedCapabilities.length, MAX_CAPABILITY_ENTRIES);
  checkCount("bundle.policies.allowed_workspace_roots", policies.allowedWorkspaceRoots.length, BUNDLE_BOUNDS.roots);
  checkCount("bundle.policies.allowed_mount_roots", policies.allowedMountRoots.length, BUNDLE_BOUNDS.roots);
  checkCount("bundle.policies.shell.allowed_programs", policies.shell?.allowedPrograms.length ?? 0, BUNDLE_BOUNDS.programs);
}
