import { Code, ConnectError, type ContextValues } from "@connectrpc/connect";
import { RuntimeHealth } from "../../gen/worker_runtime/v1/backend_pb.js";
import { ErrorDetailSchema, ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import type { ConfigBundle, BundleProfileRef } from "../../gen/worker_runtime/v1/profile_pb.js";
import type { BundleDir } from "./bundle-dir.js";
import type { RuntimeClients } from "./runtime-clients.js";
import type { RuntimeConnection } from "./runtime-connection.js";

/** Calls a Runtime through the router (its deadline, health reporting and error mapping). */
export type RoutedCall = <T>(
  fn: (clients: RuntimeClients, options: { signal: AbortSignal; timeoutMs: number }) => Promise<T>,
) => Promise<T>;

/**
 * Makes sure a Runtime holds a bundle before a worker is created from it,
 * so a caller never pushes bundles itself. The bundles offered are the
 * Backend's catalog (--bundles-dir, re-read when it lacks the selector) and,
 * for an id the catalog does not hold, the ones stored in the embedded
 * Runtime (PutConfigBundle through the Backend without runtime_id). A
 * selector whose {bundle_id, digest} neither holds is left alone: the
 * Runtime answers NOT_FOUND or BUNDLE_CONFLICT itself. A Runtime whose
 * stored copy is damaged (GetConfigBundle: BUNDLE_UNAVAILABLE, cause
 * "damaged") gets the bundle pushed again, which heals it.
 *
 * What is known present is cached per connection and digest, and forgotten
 * whenever the connection leaves READY (a restarted or replaced Runtime may
 * have lost its store), or when a create still finds the bundle missing.
 */
export class BundlePush {
  private readonly present = new WeakMap<RuntimeConnection, Set<string>>();

  constructor(
    private readonly catalog: BundleDir,
    /** The embedded Runtime's connection, consulted for bundles not in the catalog. */
    private readonly embedded: () => RuntimeConnection | undefined,
    private readonly lookupTimeoutMs: number,
  ) {}

  /**
   * Pushes the selected bundle to `connection`'s Runtime if it is one the
   * Backend holds and the Runtime lacks it or holds it damaged
   * (GetConfigBundle → NOT_FOUND or BUNDLE_UNAVAILABLE "damaged" →
   * PutConfigBundle, both idempotent). Returns whether the Backend holds it.
   * `contextValues` are the served CreateWorker's: the lookup in the embedded
   * Runtime belongs to its trace and forwards its request id, as routed calls do.
   */
  async ensure(
    connection: RuntimeConnection,
    ref: BundleProfileRef,
    call: RoutedCall,
    signal: AbortSignal,
    contextValues?: ContextValues,
  ): Promise<boolean> {
    const known = this.knownOn(connection);
    if (known.has(key(ref))) return true;
    const bundle = await this.held(connection, ref, signal, contextValues);
    if (!bundle) return false;
    let stored: ConfigBundle | undefined;
    let damaged = false;
    try {
      stored = (await call((c, o) => c.management.getConfigBundle({ bundleId: ref.bundleId, runtimeId: connection.runtimeId }, o))).bundle;
    } catch (error) {
      // A damaged copy is healed by the same bundle pushed again; one a push cannot cure is CreateWorker's to refuse.
      if (isDamagedCopy(error, bundle.bundleId, bundle.digest)) damaged = true;
      else if (isBundleUnavailable(error)) return true;
      else if (ConnectError.from(error).code !== Code.NotFound) throw error;
    }
    // Another digest under the id: no push; CreateWorker answers BUNDLE_CONFLICT.
    if (stored && stored.digest !== bundle.digest) return true;
    if (!stored || damaged) await call((c, o) => c.management.putConfigBundle({ bundle, runtimeId: connection.runtimeId }, o));
    known.add(key(ref));
    return true;
  }

  /** Forgets that the bundle is on the Runtime (a create found it missing after all). */
  forget(connection: RuntimeConnection, ref: BundleProfileRef): void {
    this.present.get(connection)?.delete(key(ref));
  }

  private knownOn(connection: RuntimeConnection): Set<string> {
    let known = this.present.get(connection);
    if (!known) {
      const set = new Set<string>();
      known = set;
      this.present.set(connection, set);
      connection.onChange(() => {
        if (connection.health !== RuntimeHealth.READY) set.clear();
      });
    }
    return known;
  }

  /** The bundle with the selector's id and digest, from the catalog or the embedded Runtime. */
  private async held(
    target: RuntimeConnection,
    ref: BundleProfileRef,
    signal: AbortSignal,
    contextValues: ContextValues | undefined,
  ): Promise<ConfigBundle | undefined> {
    const fromCatalog = this.catalog.find(ref.bundleId, ref.digest);
    if (fromCatalog) return fromCatalog;
    if (!this.catalog.hasId(ref.bundleId)) {
      const fromEmbedded = await this.fromEmbedded(target, ref, signal, contextValues);
      if (fromEmbedded) return fromEmbedded;
    }
    // Perhaps added to --bundles-dir (or edited) since it was last read.
    await Promise.race([this.catalog.refresh(), aborted(signal)]);
    return this.catalog.find(ref.bundleId, ref.digest);
  }

  private async fromEmbedded(
    target: RuntimeConnection,
    ref: BundleProfileRef,
    signal: AbortSignal,
    contextValues: ContextValues | undefined,
  ): Promise<ConfigBundle | undefined> {
    const embedded = this.embedded();
    if (!embedded || embedded === target || embedded.health !== RuntimeHealth.READY) return undefined;
    try {
      const { bundle } = await embedded.clients.management.getConfigBundle(
        { bundleId: ref.bundleId },
        { signal, timeoutMs: this.lookupTimeoutMs, ...(contextValues ? { contextValues } : {}) },
      );
      return bundle?.digest === ref.digest ? bundle : undefined;
    } catch {
      // Not stored there (or unreadable): the target Runtime decides.
      return undefined;
    }
  }
}

/**
 * Whether a CreateWorker failed because the Runtime does not hold the
 * selected bundle (NOT_FOUND + NOT_FOUND naming its bundle_id) or holds a
 * damaged copy of it, the failures a push can cure; PROFILE_NOT_FOUND, a
 * bundle that breaks today's rules and the rest are final.
 */
export function isBundleMissing(error: unknown, ref: BundleProfileRef): boolean {
  const upstream = ConnectError.from(error);
  if (isDamagedCopy(upstream, ref.bundleId, ref.digest)) return true;
  if (upstream.code !== Code.NotFound) return false;
  const detail = upstream.findDetails(ErrorDetailSchema)[0];
  return detail?.reason === ErrorReason.NOT_FOUND && detail.metadata["bundle_id"] === ref.bundleId;
}

/** A Runtime's BUNDLE_UNAVAILABLE refusal (FAILED_PRECONDITION), whatever its cause. */
function isBundleUnavailable(error: unknown): boolean {
  const upstream = ConnectError.from(error);
  return upstream.code === Code.FailedPrecondition && upstream.findDetails(ErrorDetailSchema)[0]?.reason === ErrorReason.BUNDLE_UNAVAILABLE;
}

/**
 * Whether the Runtime holds a damaged copy of this bundle (BUNDLE_UNAVAILABLE,
 * cause "damaged", held for this digest or for none it knows): the same
 * bundle pushed again replaces it. One held for another digest, or one that
 * breaks today's rules ("invalid"), a push cannot cure.
 */
function isDamagedCopy(error: unknown, bundleId: string, digest: string): boolean {
  if (!isBundleUnavailable(error)) return false;
  const metadata = ConnectError.from(error).findDetails(ErrorDetailSchema)[0]?.metadata ?? {};
  const held = metadata["digest"] ?? "";
  return metadata["bundle_id"] === bundleId && metadata["cause"] === "damaged" && (held === "" || held === digest);
}

/** Resolves when `signal` aborts (the caller gave up; no need to wait for a re-read). */
function aborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => signal.addEventListener("abort", () => resolve(), { once: true }));
}

function key(ref: BundleProfileRef): string {
  return `${ref.bundleId}\u0000${ref.digest}`;
}
