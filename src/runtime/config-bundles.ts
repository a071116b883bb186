import { create, toBinary } from "@bufbuild/protobuf";
import { cloneMessage } from "./message-clone.js";
import { Code } from "@connectrpc/connect";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { DiagnosticSeverity } from "../../gen/worker_runtime/v1/runtime_pb.js";
import { type BundleProfileRef, type ConfigBundle, ConfigBundleSchema, type Profile } from "../../gen/worker_runtime/v1/profile_pb.js";
import {
  type GetConfigBundleRequest,
  type GetConfigBundleResponse,
  GetConfigBundleResponseSchema,
  type ListConfigBundlesRequest,
  type ListConfigBundlesResponse,
  ListConfigBundlesResponseSchema,
  type PutConfigBundleRequest,
  type PutConfigBundleResponse,
  PutConfigBundleResponseSchema,
} from "../../gen/worker_runtime/v1/runtime_management_pb.js";
import { bundleDigest, canonicalBundle } from "./bundle-digest.js";
import { isToolCapability } from "./capabilities.js";
import { invalidArgument, limitExceeded, notFound, RuntimeError } from "./errors.js";
import type { Limits } from "./limits.js";
import { ResponseBudget, responseBudgetBytes } from "./message-budget.js";
import type { PageTokens } from "./page-token.js";
import type { StoreDiagnostic } from "./store.js";
import { checkSecretName } from "./host-secrets.js";
import { checkProfileRules } from "./profile-rules.js";
import { typedStoreErrors } from "./store-errors.js";
import { checkId, resolvePageSize } from "./validation.js";

/** Largest encoded bundle accepted: a quarter of the message budget leaves room for the response around it. */
export const MAX_BUNDLE_BYTES = 256 * 1024;
/** Most bundles one runtime keeps (they are never deleted; ids are meant to be few and reused by digest). */
const MAX_BUNDLES = 1000;
/** A bundle digest as bundleDigest writes it (ConfigBundle.digest). */
const DIGEST = /^sha256:[0-9a-f]{64}$/;
/** Program names of a shell policy: a bare name looked up on PATH, never a path. */
const PROGRAM_NAME = /^[A-Za-z0-9._+-]{1,64}$/;

/** What the registry needs to persist bundles. */
export interface BundleStore {
  putConfigBundle(bundle: ConfigBundle): Promise<void>;
}

/**
 * The config bundles pushed to this runtime (SPEC §6.4): verified against
 * their digest, kept in canonical form, persisted before they are
 * acknowledged, immutable (same id + other digest is refused), and resolved
 * by `{bundle_id, digest, profile}` when a Worker is created or restored.
 */
export class ConfigBundles {
  private readonly bundles = new Map<string, ConfigBundle>();
  /** Puts in flight by id, so two concurrent puts of one id agree. */
  private readonly pending = new Map<string, Promise<ConfigBundle>>();
  /** Restored bundles left out because their content does not match their digest (for GetRuntime's diagnostics). */
  readonly restoreDiagnostics: StoreDiagnostic[] = [];

  constructor(
    private readonly store: BundleStore,
    private readonly limits: Limits,
    private readonly pageTokens: PageTokens,
    restored: readonly ConfigBundle[] = [],
  ) {
    for (const bundle of restored) {
      // Workers name a bundle by its digest: a stored one edited since (a wider policy under the
      // old digest) must not pass for what was pushed. Pushing it again restores it.
      if (bundleDigest(bundle) === bundle.digest) this.bundles.set(bundle.bundleId, canonicalBundle(bundle));
      else
        this.restoreDiagnostics.push({
          severity: DiagnosticSeverity.ERROR,
          code: "store.bundle_damaged",
          message: `config bundle ${bundle.bundleId} is damaged: its content does not match its digest; push it again`,
        });
    }
  }

  /** PutConfigBundle: verify, refuse a conflicting id, persist, answer the canonical bundle. */
  async put(request: PutConfigBundleRequest): Promise<PutConfigBundleResponse> {
    const bundle = checkBundle(request.bundle);
    const answer = (stored: ConfigBundle): PutConfigBundleResponse =>
      create(PutConfigBundleResponseSchema, { bundle: cloneMessage(ConfigBundleSchema, stored) });
    const existing = this.bundles.get(bundle.bundleId);
    if (existing) return answer(this.sameOrConflict(existing, bundle));
    const inFlight = this.pending.get(bundle.bundleId);
    if (inFlight) return answer(this.sameOrConflict(await inFlight, bundle));
    if (this.bundles.size + this.pending.size >= MAX_BUNDLES) {
      throw new RuntimeError(
        Code.ResourceExhausted,
        ErrorReason.LIMIT_EXCEEDED,
        `the runtime already holds ${MAX_BUNDLES} config bundles`,
        {
          limit: String(MAX_BUNDLES),
        },
      );
    }
    const write = typedStoreErrors(this.store.putConfigBundle(bundle)).then(() => {
      this.bundles.set(bundle.bundleId, bundle);
      return bundle;
    });
    this.pending.set(bundle.bundleId, write);
    try {
      return answer(await write);
    } finally {
      this.pending.delete(bundle.bundleId);
    }
  }

  /** GetConfigBundle. */
  get(request: GetConfigBundleRequest): GetConfigBundleResponse {
    checkId("bundle_id", request.bundleId);
    const bundle = this.bundles.get(request.bundleId);
    if (!bundle) throw notFound("bundle_id", request.bundleId);
    return create(GetConfigBundleResponseSchema, { bundle: cloneMessage(ConfigBundleSchema, bundle) });
  }

  /** ListConfigBundles, by id, paginated and bounded by bytes. */
  list(request: ListConfigBundlesRequest): ListConfigBundlesResponse {
    const { limits } = this;
    const pageSize = resolvePageSize("page_size", request.pageSize, limits.defaultPageSize, limits.maxPageSize);
    const after = this.pageTokens.decode("page_token", "config-bundles", [], request.pageToken);
    if (typeof after === "number") throw invalidArgument("page_token", "is not a valid page token");
    const ids = [...this.bundles.keys()].filter((id) => after === undefined || id > after).sort();
    const budget = new ResponseBudget(responseBudgetBytes(limits));
    const page: ConfigBundle[] = [];
    for (const id of ids.slice(0, pageSize)) {
      const bundle = this.bundles.get(id);
      if (!bundle) continue;
      if (!budget.take(toBinary(ConfigBundleSchema, bundle).byteLength) && page.length > 0) break;
      page.push(bundle);
    }
    const last = page[page.length - 1];
    return create(ListConfigBundlesResponseSchema, {
      bundles: page.map((bundle) => cloneMessage(ConfigBundleSchema, bundle)),
      nextPageToken: last && page.length < ids.length ? this.pageTokens.encode("config-bundles", [], last.bundleId) : "",
    });
  }

  /**
   * Resolves a CreateWorker bundle reference: NOT_FOUND for an unknown
   * bundle, FAILED_PRECONDITION + BUNDLE_CONFLICT when the runtime holds the
   * id with another digest, PROFILE_NOT_FOUND for a name not in it.
   */
  resolve(field: string, ref: BundleProfileRef): { bundle: ConfigBundle; profile: Profile } {
    checkId(`${field}.bundle_id`, ref.bundleId);
    if (ref.digest === "") throw invalidArgument(`${field}.digest`, "is required");
    if (!DIGEST.test(ref.digest)) throw invalidArgument(`${field}.digest`, 'must be "sha256:" and 64 lowercase hex digits');
    const bundle = this.bundles.get(ref.bundleId);
    if (!bundle) {
      throw new RuntimeError(
        Code.NotFound,
        ErrorReason.NOT_FOUND,
        `config bundle "${ref.bundleId}" is not on this runtime; push it first`,
        {
          bundle_id: ref.bundleId,
        },
      );
    }
    if (bundle.digest !== ref.digest) {
      throw new RuntimeError(
        Code.FailedPrecondition,
        ErrorReason.BUNDLE_CONFLICT,
        `${field}.digest: config bundle "${ref.bundleId}" on this runtime has digest ${bundle.digest}, not ${ref.digest}`,
        { field: `${field}.digest`, bundle_id: ref.bundleId, digest: bundle.digest },
      );
    }
    const profile = bundle.profiles.find((p) => p.name === ref.profile);
    if (!profile) {
      throw new RuntimeError(
        Code.NotFound,
        ErrorReason.PROFILE_NOT_FOUND,
        `profile "${ref.profile.slice(0, 64)}" is not in config bundle "${ref.bundleId}"`,
        { profile: ref.profile.slice(0, 64), bundle_id: ref.bundleId },
      );
    }
    return { bundle, profile };
  }

  /** The stored bundle with this id and digest, if any (restored workers). */
  find(bundleId: string, digest: string): ConfigBundle | undefined {
    const bundle = this.bundles.get(bundleId);
    return bundle?.digest === digest ? bundle : undefined;
  }

  /** Bundles held. */
  get size(): number {
    return this.bundles.size;
  }

  private sameOrConflict(existing: ConfigBundle, bundle: ConfigBundle): ConfigBundle {
    if (existing.digest === bundle.digest) return existing;
    throw new RuntimeError(
      Code.AlreadyExists,
      ErrorReason.BUNDLE_CONFLICT,
      `config bundle "${bundle.bundleId}" already exists with digest ${existing.digest}; bundles are immutable, push a new id`,
      { bundle_id: bundle.bundleId, digest: existing.digest },
    );
  }
}

/**
 * Checks a pushed bundle and returns its canonical form: shape, sizes, known
 * capabilities, and a digest that matches the content (INVALID_ARGUMENT +
 * BUNDLE_CONFLICT when it does not: altered in transit or built wrongly).
 */
export function checkBundle(bundle: ConfigBundle | undefined): ConfigBundle {
  if (!bundle) throw invalidArgument("bundle", "is required");
  checkId("bundle.bundle_id", bundle.bundleId);
  const bytes = toBinary(ConfigBundleSchema, bundle).byteLength;
  if (bytes > MAX_BUNDLE_BYTES) throw limitExceeded("bundle", MAX_BUNDLE_BYTES, `is ${bytes} bytes; at most ${MAX_BUNDLE_BYTES} allowed`);
  if (bundle.profiles.length === 0) throw invalidArgument("bundle.profiles", "must hold at least one profile");
  const names = new Set<string>();
  for (const [i, profile] of bundle.profiles.entries()) {
    const field = `bundle.profiles[${i}]`;
    checkProfileRules(profile, field);
    if (names.has(profile.name)) throw invalidArgument(`${field}.name`, `"${profile.name}" appears twice`);
    names.add(profile.name);
    for (const [j, name] of profile.secretNames.entries()) checkSecretName(`${field}.secret_names[${j}]`, name);
    if (profile.providerApiKeySecret !== "") {
      checkSecretName(`${field}.provider_api_key_secret`, profile.providerApiKeySecret);
      if (!profile.secretNames.includes(profile.providerApiKeySecret)) {
        throw invalidArgument(`${field}.provider_api_key_secret`, "must also be listed in secret_names");
      }
    }
  }
  const policies = bundle.policies;
  for (const [i, capability] of (policies?.allowedCapabilities ?? []).entries()) {
    if (!isToolCapability(capability)) {
      throw invalidArgument(`bundle.policies.allowed_capabilities[${i}]`, `unknown capability "${capability.slice(0, 64)}"`);
    }
  }
  for (const [i, root] of (policies?.allowedWorkspaceRoots ?? []).entries()) {
    if (root === "" || root.length > 64) throw invalidArgument(`bundle.policies.allowed_workspace_roots[${i}]`, "must be 1-64 characters");
  }
  for (const [i, root] of (policies?.allowedMountRoots ?? []).entries()) {
    if (root === "" || root.length > 64) throw invalidArgument(`bundle.policies.allowed_mount_roots[${i}]`, "must be 1-64 characters");
  }
  for (const [i, program] of (policies?.shell?.allowedPrograms ?? []).entries()) {
    if (!PROGRAM_NAME.test(program) || program === "." || program === "..") {
      throw invalidArgument(
        `bundle.policies.shell.allowed_programs[${i}]`,
        "must be a program name without '/' (1-64 characters of [A-Za-z0-9._+-])",
      );
    }
  }
  const expected = bundleDigest(bundle);
  if (bundle.digest !== expected) {
    throw new RuntimeError(
      Code.InvalidArgument,
      ErrorReason.BUNDLE_CONFLICT,
      `bundle.digest: ${bundle.digest === "" ? "is required" : "does not match the bundle's content"}; the digest of this content is ${expected}`,
      { field: "bundle.digest", digest: expected },
    );
  }
  return canonicalBundle(bundle);
}
