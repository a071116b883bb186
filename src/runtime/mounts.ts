import { create } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import path from "node:path";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import type { BundlePolicies } from "../../gen/worker_runtime/v1/profile_pb.js";
import { type MountSpec, MountSpecSchema } from "../../gen/worker_runtime/v1/worker_pb.js";
import { hostPathsOverlap, type Place } from "./host-locations.js";
import { isToolCapability, WRITE_CAPABILITIES } from "./capabilities.js";
import { invalidArgument, limitExceeded, RuntimeError } from "./errors.js";
import type { RunMount } from "./execution-backend.js";

/**
 * Mount names are one path segment of /mounts/<name>, so the alphabet of
 * label keys: lower case, no "/", never "." or "..", nothing a shell quotes.
 */
const MOUNT_NAME = /^[a-z0-9](?:[a-z0-9._-]{0,61}[a-z0-9])?$/;

/** What {@link checkMounts} checks a CreateWorker's mounts against. */
export interface MountRules {
  /** The capabilities granted (checked already). */
  capabilities: readonly string[];
  /** The worker's workspace (checked already), if it has one. */
  workspace: { root: string; path: string } | undefined;
  /** The profile's config bundle's policies; undefined for a builtin profile. */
  policies: BundlePolicies | undefined;
  /** Limits.maxMounts. */
  maxMounts: number;
  /** Checks a root and path as a workspace's are (ExecutionOffer.checkWorkspace). */
  checkPath(
    root: string,
    relative: string,
    policies: BundlePolicies | undefined,
    field: string,
    bundleRoots: readonly string[] | undefined,
  ): { root: string; path: string };
}

/**
 * Checks CreateWorker's mounts (MountSpec in worker.proto) and returns them
 * as the worker keeps them. A mount needs a workspace (the tools that read it
 * run there), a name unique among the worker's mounts, a root and path as a
 * workspace's (the bundle's allowed_mount_roots for a bundle's profile),
 * and, to be writable, a capability that writes (and the bundle's
 * allow_writable_mounts). Errors name the field. Where they are on the host
 * is checked once they are located ({@link checkMountsApart}).
 */
export function checkMounts(mounts: readonly MountSpec[], rules: MountRules): MountSpec[] {
  if (mounts.length === 0) return [];
  if (mounts.length > rules.maxMounts) {
    throw limitExceeded("mounts", rules.maxMounts, `has ${mounts.length} mounts; at most ${rules.maxMounts}`);
  }
  const workspace = rules.workspace;
  if (!workspace) throw invalidArgument("mounts", "need a workspace: the tools that use them run in it");
  const names = new Set<string>();
  return mounts.map((mount, i) => {
    const field = `mounts[${i}]`;
    if (!MOUNT_NAME.test(mount.name)) {
      throw invalidArgument(`${field}.name`, "must be 1-63 characters of [a-z0-9._-], starting and ending with [a-z0-9]");
    }
    if (names.has(mount.name)) throw invalidArgument(`${field}.name`, `"${mount.name}" names another mount already`);
    names.add(mount.name);
    const { root, path } = rules.checkPath(mount.root, mount.path, rules.policies, field, rules.policies?.allowedMountRoots);
    if (mount.writable) checkWritable(field, rules);
    return create(MountSpecSchema, { root, path, name: mount.name, writable: mount.writable });
  });
}

/**
 * Refuses a worker's mounts that overlap on the host (symlinks resolved)
 * its workspace or one another: one directory would be both writable and
 * read-only, or leased twice. `located`: the worker's leases, located (its
 * workspace's has no mount name); errors name the mount's path field.
 */
export function checkMountsApart(located: readonly (Place & { hostPath: string })[]): void {
  const workspace = located.find((place) => place.mountName === "");
  const earlier: (Place & { hostPath: string })[] = [];
  for (const mount of located) {
    if (mount === workspace) continue;
    if (workspace && hostPathsOverlap(mount.hostPath, workspace.hostPath))
      throw invalidArgument(`${mount.field}.path`, "overlaps the worker's workspace");
    const other = earlier.find((e) => hostPathsOverlap(e.hostPath, mount.hostPath));
    if (other) throw invalidArgument(`${mount.field}.path`, `overlaps the worker's mount "${other.mountName}"`);
    earlier.push(mount);
  }
}

function checkWritable(field: string, rules: MountRules): void {
  if (!rules.capabilities.some((c) => isToolCapability(c) && WRITE_CAPABILITIES.has(c))) {
    throw invalidArgument(`${field}.writable`, "needs the fs.write or shell.exec capability, without which nothing writes");
  }
  if (rules.policies && !rules.policies.allowWritableMounts) {
    throw new RuntimeError(
      Code.PermissionDenied,
      ErrorReason.WORKSPACE_DENIED,
      `${field}.writable: the profile's config bundle allows read-only mounts only`,
      { field: `${field}.writable` },
    );
  }
}

/**
 * Host directories of a worker's mounts, for its runs (never sent to
 * clients). A mount whose root the operator no longer configures has none:
 * the backend then fails the run rather than run without it.
 */
export function mountDirs(mounts: readonly MountSpec[], roots: Readonly<Record<string, string>>): RunMount[] {
  return mounts.map((mount) => {
    const rootDir = Object.hasOwn(roots, mount.root) ? roots[mount.root] : undefined;
    if (rootDir === undefined) return { name: mount.name, writable: mount.writable };
    return { name: mount.name, writable: mount.writable, rootDir, dir: path.join(rootDir, ...mount.path.split("/").filter(Boolean)) };
  });
}

/** Host directories of a worker's workspace, of its root, of every root, and of its mounts (ExecutionOffer.workspaceDirOf). */
export interface WorkspaceDirs {
  dir: string;
  root: string;
  roots: string[];
  mounts?: RunMount[];
}
