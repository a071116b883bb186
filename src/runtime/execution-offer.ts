import { create } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import path from "node:path";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import {
  type BundlePolicies,
  type Profile,
  type ProfileSelector,
  ProfileSelectorSchema,
  BundlePoliciesSchema,
} from "../../gen/worker_runtime/v1/profile_pb.js";
import { ConnectivitySchema, ConnectivityState, type Connectivity, type Worker } from "../../gen/worker_runtime/v1/worker_pb.js";
import { isToolCapability, WRITE_CAPABILITIES } from "./capabilities.js";
import { invalidArgument, notFound, RuntimeError } from "./errors.js";
import type { ConfigBundles } from "./config-bundles.js";
import {
  type ExecutionBackend,
  type ExecutionLimits,
  PROGRAM_CHECK_UNANSWERED,
  type ProgramProblem,
  type RunPolicy,
} from "./execution-backend.js";
import { type HostSecrets, resolveSecrets } from "./host-secrets.js";
import type { Limits } from "./limits.js";
import { COMPANION_PROFILE } from "./profiles.js";
import { checkTextBytes } from "./validation.js";
import { mountDirs, type WorkspaceDirs } from "./mounts.js";
import type { HostLocations } from "./host-locations.js";

/**
 * What this runtime offers a Worker: profiles, tool capabilities,
 * workspace roots and whether runs can execute at all. CreateWorker
 * requests are checked against it, and runs resolve their profile and
 * workspace directory through it. Workspace roots are named, so host paths
 * never appear in the API.
 */
export class ExecutionOffer {
  constructor(
    readonly backend: ExecutionBackend | undefined,
    /** The workspace roots, and where their directories are on the host (leases compare there). */
    readonly locations: HostLocations,
    private readonly limits: Pick<Limits, "maxWorkspacePathBytes">,
    private readonly bundles: ConfigBundles,
    private readonly secrets: HostSecrets,
  ) {}

  /** Profiles by builtin name; "companion" is always offered. */
  profiles(): Profile[] {
    const fromBackend = this.backend?.profiles() ?? [];
    return fromBackend.some((p) => p.name === COMPANION_PROFILE.name) ? fromBackend : [COMPANION_PROFILE, ...fromBackend];
  }

  /** Tool capabilities the backend can grant. */
  toolCapabilities(): string[] {
    return this.backend?.toolCapabilities() ?? [];
  }

  /** How shell.exec commands are isolated ("" when not offered or not said). */
  shellSandbox(): string {
    return this.toolCapabilities().includes("shell.exec") ? (this.backend?.shellSandbox?.() ?? "") : "";
  }

  /** The backend's bounds on runs (zeros without a backend, or one that reports none). */
  executionLimits(): ExecutionLimits {
    return this.backend?.limits?.() ?? { streamIdleTimeoutMs: 0, maxAnswerBytes: 0, retryBudgetMs: 0 };
  }

  /**
   * The backend's name for GetRuntime, or "" while it is not configured
   * (e.g. the OpenAI backend without a key): the field's documented meaning.
   */
  backendName(): string {
    return this.backend && this.notConnectedReason() === undefined ? this.backend.name : "";
  }

  /** Names of the allowed workspace roots. */
  rootNames(): string[] {
    return Object.keys(this.locations.roots);
  }

  /** Why runs cannot execute, or undefined when they can. */
  notConnectedReason(): string | undefined {
    if (!this.backend) return "no execution backend is configured on this runtime";
    const availability = this.backend.availability();
    return availability.available ? undefined : availability.reason;
  }

  /**
   * A worker's connectivity as of now: NOT_CONNECTED when runs cannot
   * execute, or (given the worker) when its config bundle is not served,
   * since it must never run on anything but its profile.
   */
  connectivity(worker?: Worker): Connectivity {
    const reason = (worker && this.bundleProblemOf(worker)?.message) ?? this.notConnectedReason();
    return create(ConnectivitySchema, {
      state: reason === undefined ? ConnectivityState.CONNECTED : ConnectivityState.NOT_CONNECTED,
      reason: reason ?? "",
    });
  }

  /**
   * Resolves a CreateWorker profile selector (unset = "companion"): a
   * builtin profile, or a bundle's profile with the bundle's policies (see
   * ConfigBundles.resolve for its errors). Every secret the profile names
   * must be configured on this host (SECRET_NOT_FOUND otherwise).
   */
  resolveSelector(selector: ProfileSelector | undefined): ResolvedProfile {
    const source = selector?.source;
    if (source?.case === "bundle") {
      const { bundle, profile } = this.bundles.resolve("profile.bundle", source.value);
      resolveSecrets(profile, this.secrets);
      const ref = { bundleId: bundle.bundleId, digest: bundle.digest, profile: profile.name };
      return {
        selector: create(ProfileSelectorSchema, { source: { case: "bundle", value: ref } }),
        profile,
        policies: bundle.policies ?? NO_POLICIES,
      };
    }
    const name = source?.case === "builtin" ? source.value : COMPANION_PROFILE.name;
    const profile = this.profiles().find((p) => p.name === name);
    if (!profile) {
      throw new RuntimeError(Code.NotFound, ErrorReason.PROFILE_NOT_FOUND, `profile "${name.slice(0, 64)}" does not exist`, {
        profile: name.slice(0, 64),
      });
    }
    return { selector: create(ProfileSelectorSchema, { source: { case: "builtin", value: name } }), profile };
  }

  /**
   * Throws when a worker cannot run on its profile: its config bundle is not
   * served (damaged, breaking today's rules, or gone), FAILED_PRECONDITION +
   * BUNDLE_UNAVAILABLE saying what to push. SendInput checks it first.
   */
  checkProfile(worker: Worker): void {
    const problem = this.bundleProblemOf(worker);
    if (problem) throw problem;
  }

  /**
   * The profile a worker runs with. A bundle worker whose bundle is not
   * served runs nothing (BUNDLE_UNAVAILABLE): a stand-in would run on the
   * runtime's own key, model and limits, with none of its prompt or policy.
   */
  profileOf(worker: Worker): Profile {
    const source = worker.profile?.source;
    if (source?.case === "bundle") {
      this.checkProfile(worker);
      const bundle = this.bundles.find(source.value.bundleId, source.value.digest);
      const profile = bundle?.profiles.find((p) => p.name === source.value.profile);
      if (!profile) throw notFound("profile", source.value.profile.slice(0, 64));
      return profile;
    }
    const name = source?.case === "builtin" ? source.value : COMPANION_PROFILE.name;
    return this.profiles().find((p) => p.name === name) ?? COMPANION_PROFILE;
  }

  /**
   * What a worker's runs may use beyond its profile: the host secrets its
   * profile names (SECRET_NOT_FOUND if the host lost one since) and, for a
   * bundle worker, the bundle's shell policy (BUNDLE_UNAVAILABLE when the bundle is not served).
   */
  policyOf(worker: Worker): RunPolicy {
    const source = worker.profile?.source;
    if (source?.case !== "bundle") return { secrets: new Map() };
    const bundle = this.bundles.find(source.value.bundleId, source.value.digest);
    const secrets = resolveSecrets(this.profileOf(worker), this.secrets);
    return { secrets, shell: { allowedPrograms: [...(bundle?.policies?.shell?.allowedPrograms ?? [])] } };
  }

  /** Why a bundle worker's bundle is not served, if it is not. */
  bundleProblemOf(worker: Worker): RuntimeError | undefined {
    const source = worker.profile?.source;
    return source?.case === "bundle" ? this.bundles.unavailable(source.value.bundleId, source.value.digest) : undefined;
  }

  /**
   * Checks requested capabilities: known, offered, allowed by the bundle's
   * policies (when the profile is a bundle's), deduplicated, with a workspace.
   */
  checkCapabilities(requested: string[], hasWorkspace: boolean, policies?: BundlePolicies): string[] {
    const offered = new Set(this.toolCapabilities());
    const unique = [...new Set(requested)];
    for (const [i, capability] of unique.entries()) {
      if (!isToolCapability(capability)) {
        throw invalidArgument(`capabilities[${i}]`, `unknown capability "${capability.slice(0, 64)}"`);
      }
      if (!offered.has(capability)) {
        throw new RuntimeError(
          Code.FailedPrecondition,
          ErrorReason.CAPABILITY_DENIED,
          `capability "${capability}" is not offered by this runtime`,
          {
            capability,
          },
        );
      }
      if (policies && !policies.allowedCapabilities.includes(capability)) {
        throw new RuntimeError(
          Code.PermissionDenied,
          ErrorReason.CAPABILITY_DENIED,
          `capability "${capability}" is not allowed by the profile's config bundle`,
          { capability },
        );
      }
      if (!hasWorkspace) throw invalidArgument("workspace", `is required for capability "${capability}"`);
    }
    return unique;
  }

  /**
   * Refuses to grant shell.exec under a bundle's shell policy that allows a
   * program this host cannot start (FAILED_PRECONDITION +
   * PROGRAM_NOT_FOUND, naming it, with metadata "cause"), as a secret the
   * host lacks is refused: the bundle may serve runtimes whose hosts have
   * it, so PutConfigBundle takes it, but a worker here would only learn of
   * it when the model called the program. A program that is there but
   * cannot start (not executable, its interpreter or loader missing) is
   * told as that, from the backend's diagnosis, not as "not installed".
   * One the backend could not check in time (a directory on its PATH did
   * not answer) is refused UNAVAILABLE HOST_PATH_UNAVAILABLE, to be tried
   * again.
   */
  checkPrograms(capabilities: readonly string[], policies?: BundlePolicies): Promise<void> | undefined {
    const allowed = policies?.shell?.allowedPrograms ?? [];
    // Nothing to ask, nothing awaited: a create without programs reaches its first write in one go.
    if (!capabilities.includes("shell.exec") || allowed.length === 0) return undefined;
    return this.programProblems(allowed).then(refuseProblems);
  }

  /** The backend's diagnosis of allowed programs, or its older list of missing ones. */
  private async programProblems(allowed: readonly string[]): Promise<ProgramProblem[]> {
    const backend = this.backend;
    if (backend?.programProblems) return backend.programProblems(allowed);
    return (backend?.missingPrograms?.(allowed) ?? []).map((program) => ({
      program,
      cause: "not_installed",
      message: `"${program}" is not installed on this runtime`,
    }));
  }

  /** Whether a worker with these capabilities needs its workspace exclusively. */
  needsWriteLease(capabilities: readonly string[]): boolean {
    return capabilities.some((c) => isToolCapability(c) && WRITE_CAPABILITIES.has(c));
  }

  /**
   * Checks a workspace: an allowed root (of the runtime, and of the bundle's
   * policies when the profile is a bundle's) and a clean relative path inside it.
   * A mount is checked the same way (mounts.ts): its `field` and the
   * bundle's list of roots for mounts instead.
   */
  checkWorkspace(
    root: string,
    relative: string,
    policies?: BundlePolicies,
    field = "workspace",
    bundleRoots: readonly string[] | undefined = policies?.allowedWorkspaceRoots,
  ): { root: string; path: string } {
    if (!Object.hasOwn(this.locations.roots, root)) {
      throw new RuntimeError(
        Code.FailedPrecondition,
        ErrorReason.WORKSPACE_DENIED,
        `${field}.root "${root.slice(0, 64)}" is not an allowed root`,
        {
          field: `${field}.root`,
        },
      );
    }
    if (bundleRoots && !bundleRoots.includes(root)) {
      throw new RuntimeError(
        Code.PermissionDenied,
        ErrorReason.WORKSPACE_DENIED,
        `${field}.root "${root.slice(0, 64)}" is not allowed by the profile's config bundle`,
        { field: `${field}.root` },
      );
    }
    checkTextBytes(`${field}.path`, relative, this.limits.maxWorkspacePathBytes);
    const segments = relative === "" ? [] : relative.split("/");
    if (
      relative.startsWith("/") ||
      relative.includes("\\") ||
      relative.includes("\0") ||
      segments.some((s) => s === "" || s === "." || s === "..")
    ) {
      throw new RuntimeError(
        Code.InvalidArgument,
        ErrorReason.WORKSPACE_DENIED,
        `${field}.path: must be a relative path inside the root without '.', '..' or empty segments`,
        { field: `${field}.path` },
      );
    }
    return { root, path: segments.join("/") };
  }

  /**
   * Host directories of a worker's workspace, of its root, and of every root
   * (where the other workers' workspaces are, for the sandbox to hide);
   * never sent to clients.
   */
  workspaceDirOf(worker: Worker): WorkspaceDirs | undefined {
    const workspace = worker.workspace;
    const root = workspace ? this.locations.roots[workspace.root] : undefined;
    if (!workspace || root === undefined) return undefined;
    const dirs = { dir: path.join(root, ...workspace.path.split("/").filter(Boolean)), root, roots: Object.values(this.locations.roots) };
    return worker.mounts.length > 0 ? { ...dirs, mounts: mountDirs(worker.mounts, this.locations.roots) } : dirs;
  }
}

/** A resolved CreateWorker profile: the selector stored on the worker, the profile, the bundle's policies if any. */
export interface ResolvedProfile {
  selector: ProfileSelector;
  profile: Profile;
  policies?: BundlePolicies;
}

/** Refuses the programs a backend diagnosed (ExecutionOffer.checkPrograms); none, nothing. */
function refuseProblems(problems: readonly ProgramProblem[]): void {
  const first = problems[0];
  if (first === undefined) return;
  const unchecked = problems.find((problem) => problem.cause === PROGRAM_CHECK_UNANSWERED);
  if (unchecked) {
    throw new RuntimeError(Code.Unavailable, ErrorReason.HOST_PATH_UNAVAILABLE, unchecked.message, {
      program: unchecked.program,
      cause: unchecked.cause,
    });
  }
  const them = problems.length === 1 ? "it" : "them";
  const message = problems.every((problem) => problem.cause === "not_installed")
    ? `the profile's config bundle allows ${problems.map((p) => `"${p.program}"`).join(", ")} for shell.exec, which this runtime does not have; install ${them} on its host or use a bundle that does not allow ${them}`
    : `the profile's config bundle allows programs for shell.exec that cannot start on this runtime: ${problems.map((p) => p.message).join("; ")}; fix ${them} on its host or use a bundle that does not allow ${them}`;
  throw new RuntimeError(Code.FailedPrecondition, ErrorReason.PROGRAM_NOT_FOUND, message, { program: first.program, cause: first.cause });
}

/** A bundle without policies allows nothing. */
const NO_POLICIES: BundlePolicies = create(BundlePoliciesSchema);
