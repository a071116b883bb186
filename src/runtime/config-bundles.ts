import { create, toBinary } from "@bufbuild/protobuf";
import { cloneMessage } from "./message-clone.js";
import { Code } from "@connectrpc/connect";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
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
import type { OpenedStore, StoreDiagnostic } from "./store.js";
import { checkSecretName } from "./host-secrets.js";
import { checkProfileRules } from "./profile-rules.js";
import { typedStoreErrors } from "./store-errors.js";
import { checkWellFormedText } from "./message-text.js";
import { bundleUnavailable, sortRestoredBundles, type UnservedBundle, unservedReason } from "./unserved-bundles.js";
import { checkId, resolvePageSize } from "./validation.js";
import { checkBundleCounts } from "./request-bounds.js";

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
 * Restored bundles that cannot be served (unserved-bundles.ts) keep their id
 * taken: their workers cannot run until the same bundle is pushed again.
 */
export class ConfigBundles {
  private readonly bundles = new Map<string, ConfigBundle>();
  /** Stored bundles not served (damaged, or breaking today's rules), by id. */
  private readonly unserved = new Map<string, UnservedBundle>();
  /** Puts in flight by id, so two concurrent puts of one id agree. */
  private readonly pending = new Map<string, Promise<ConfigBundle>>();
  /** One ERROR per restored bundle not served (for GetRuntime's diagnostics). */
  readonly restoreDiagnostics: StoreDiagnostic[];

  /**
   * `onServed` hears of an unserved bundle pushed again, so its workers can
   * run again; PutConfigBundle answers once they are told (a failure to
   * announce it is the store's to report: the bundle is stored).
   */
  constructor(
    private readonly store: BundleStore,
    private readonly limits: Limits,
    private readonly pageTokens: PageTokens,
    restored: Pick<OpenedStore, "configBundles" | "damagedConfigBundles" | "workers"> = { workers: [] },
    private readonly onServed: (bundleId: string) => Promise<unknown> = async () => {},
  ) {
    const sorted = sortRestoredBundles(
      {
        bundles: restored.configBundles ?? [],
        damaged: restored.damagedConfigBundles ?? [],
        workers: restored.workers.map((w) => w.record.worker),
      },
      bundleDigest,
      checkBundle,
    );
    for (const bundle of sorted.served) this.bundles.set(bundle.bundleId, bundle);
    for (const bundle of sorted.unserved) this.unserved.set(bundle.bundleId, bundle);
    this.restoreDiagnostics = sorted.diagnostics;
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
    // An unserved copy's id is not free: its workers name its digest (none known: nothing depends on it).
    const held = this.unserved.get(bundle.bundleId);
    if (held?.digest && held.digest !== bundle.digest) {
      const advice =
        held.kind === "damaged" ? "its stored copy is damaged: push that bundle again" : "push a corrected bundle under a new id";
      throw conflict(bundle.bundleId, held.digest, advice);
    }
    const twin = this.caseTwin(bundle.bundleId);
    if (twin !== undefined) throw caseConflict(bundle.bundleId, twin.bundleId, twin.digest);
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
    const write = typedStoreErrors(this.store.putConfigBundle(bundle)).then(async () => {
      this.bundles.set(bundle.bundleId, bundle);
      if (this.unserved.delete(bundle.bundleId)) await this.onServed(bundle.bundleId).catch(() => {});
      return bundle;
    });
    this.pending.set(bundle.bundleId, write);
    try {
      return answer(await write);
    } finally {
      this.pending.delete(bundle.bundleId);
    }
  }

  /**
   * GetConfigBundle: NOT_FOUND only for an id never stored; one stored but
   * not served is FAILED_PRECONDITION + BUNDLE_UNAVAILABLE, as SendInput
   * names it, so a caller (the Backend's push) knows to push it again.
   */
  get(request: GetConfigBundleRequest): GetConfigBundleResponse {
    checkId("bundle_id", request.bundleId);
    const bundle = this.bundles.get(request.bundleId);
    const unserved = this.unserved.get(request.bundleId);
    if (!bundle && unserved) {
      throw bundleUnavailable(unservedReason(request.bundleId, unserved.digest, unserved), request.bundleId, unserved.digest, unserved);
    }
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
    const unserved = this.unserved.get(ref.bundleId);
    if (!bundle && unserved) {
      const digest = unserved.digest || ref.digest;
      throw bundleUnavailable(unservedReason(ref.bundleId, digest, unserved), ref.bundleId, digest, unserved);
    }
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

  /**
   * Why a worker on this bundle reference cannot run (FAILED_PRECONDITION +
   * BUNDLE_UNAVAILABLE, saying what to push), or undefined when the bundle is
   * served with that digest.
   */
  unavailable(bundleId: string, digest: string): RuntimeError | undefined {
    if (this.find(bundleId, digest)) return undefined;
    const unserved = this.unserved.get(bundleId);
    return bundleUnavailable(unservedReason(bundleId, digest, unserved), bundleId, digest, unserved);
  }

  /** Bundles held. */
  get size(): number {
    return this.bundles.size;
  }

  /**
   * A held id (served, not served, or being put) equal to `bundleId` but
   * for case, with the digest it is held for. Ids are ASCII, so ASCII case
   * folding is every folding a file system applies to them.
   */
  private caseTwin(bundleId: string): { bundleId: string; digest: string } | undefined {
    const folded = bundleId.toLowerCase();
    for (const held of [this.bundles, this.unserved, this.pending]) {
      for (const id of held.keys()) {
        if (id !== bundleId && id.toLowerCase() === folded)
          return { bundleId: id, digest: this.bundles.get(id)?.digest ?? this.unserved.get(id)?.digest ?? "" };
      }
    }
    return undefined;
  }

  private sameOrConflict(existing: ConfigBundle, bundle: ConfigBundle): ConfigBundle {
    if (existing.digest === bundle.digest) return existing;
    throw conflict(bundle.bundleId, existing.digest, "bundles are immutable, push a new id");
  }
}

/** PutConfigBundle of an id held with another digest: ALREADY_EXISTS + BUNDLE_CONFLICT. */
function conflict(bundleId: string, held: string, advice: string): RuntimeError {
  return new RuntimeError(
    Code.AlreadyExists,
    ErrorReason.BUNDLE_CONFLICT,
    `config bundle "${bundleId}" already exists with digest ${held}; ${advice}`,
    { bundle_id: bundleId, digest: held },
  );
}

/**
 * PutConfigBundle of an id that differs from a held one only in case:
 * ALREADY_EXISTS + BUNDLE_CONFLICT. On a case-insensitive file system
 * (macOS, Windows) the file store would keep both in one file, and one
 * would silently replace the other; ids are unique ignoring case on every
 * store, so a bundle one runtime accepts, every runtime accepts.
 */
function caseConflict(bundleId: string, held: string, digest: string): RuntimeError {
  return new RuntimeError(
    Code.AlreadyExists,
    ErrorReason.BUNDLE_CONFLICT,
    `config bundle id "${bundleId}" differs only in case from "${held}", which this runtime holds; bundle ids must differ by more than case: use "${held}" or another id`,
    { bundle_id: bundleId, held_bundle_id: held, digest },
  );
}

/**
 * Checks a pushed bundle and returns its canonical form: shape, sizes, known
 * capabilities, and a digest that matches the content (INVALID_ARGUMENT +
 * BUNDLE_CONFLICT when it does not: altered in transit or built wrongly).
 */
export function checkBundle(bundle: ConfigBundle | undefined): ConfigBundle {
  if (!bundle) throw invalidArgument("bundle", "is required");
  // Counted before any per-entry work below (request-bounds.ts).
  checkBundleCounts(bundle);
  // Before anything encodes it: a lone surrogate (an embedder's string) cannot be encoded, copied or stored.
  checkWellFormedText(ConfigBundleSchema, bundle, "bundle");
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
