import { Code } from "@connectrpc/connect";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import type { ConfigBundle } from "../../gen/worker_runtime/v1/profile_pb.js";
import { DiagnosticSeverity } from "../../gen/worker_runtime/v1/runtime_pb.js";
import type { Connectivity, Worker } from "../../gen/worker_runtime/v1/worker_pb.js";
import { RuntimeError } from "./errors.js";
import type { ExecutionOffer } from "./execution-offer.js";
import type { DamagedConfigBundle, StoreDiagnostic } from "./store.js";
import { workerConnectivity } from "./worker-connectivity.js";

/**
 * A stored config bundle this runtime does not serve: its copy is damaged
 * (unreadable, bad checksum, content that no longer matches its digest) or it
 * breaks a rule added since it was stored. Its workers must not run on
 * anything but their profile, so they cannot run at all until it is served.
 */
export interface UnservedBundle {
  bundleId: string;
  /**
   * The digest the id is held for: the one its workers name (they are what a
   * wrong copy would strand), else the one its stored copy claims, else ""
   * (nothing tells it, and nothing depends on it: any digest may take the id).
   */
  digest: string;
  kind: "damaged" | "invalid";
  /** What is wrong, in words. */
  cause: string;
}

/** The bundle id a worker's profile selector names, if it names one. */
export function bundleIdOf(worker: Worker): string | undefined {
  const source = worker.profile?.source;
  return source?.case === "bundle" ? source.value.bundleId : undefined;
}

/**
 * Sorts restored bundles into those served and those not: a bundle is served
 * only if it still matches its digest and passes the rules PutConfigBundle
 * applies today (`check`), since rules tightened later (a max_turns bound,
 * approval_required_tools naming a tool) must hold for old data too. Every
 * one not served gets an ERROR diagnostic naming it, why, and how many
 * workers wait on it.
 */
export function sortRestoredBundles(
  stored: { bundles: readonly ConfigBundle[]; damaged: readonly DamagedConfigBundle[]; workers: readonly Worker[] },
  digestOf: (bundle: ConfigBundle) => string,
  check: (bundle: ConfigBundle) => ConfigBundle,
): { served: ConfigBundle[]; unserved: UnservedBundle[]; diagnostics: StoreDiagnostic[] } {
  const named = new Map<string, { digest: string; workers: number }>();
  for (const worker of stored.workers) {
    const source = worker.profile?.source;
    if (source?.case !== "bundle") continue;
    const seen = named.get(source.value.bundleId);
    named.set(source.value.bundleId, { digest: seen?.digest ?? source.value.digest, workers: (seen?.workers ?? 0) + 1 });
  }
  const served: ConfigBundle[] = [];
  const unserved: UnservedBundle[] = [];
  const hold = (bundleId: string, claimed: string, kind: UnservedBundle["kind"], cause: string): void => {
    unserved.push({ bundleId, digest: named.get(bundleId)?.digest ?? claimed, kind, cause });
  };
  for (const bundle of stored.bundles) {
    // Workers name a bundle by its digest: a stored one edited since (a wider policy under the
    // old digest) must not pass for what was pushed.
    if (!digestMatches(bundle, digestOf)) {
      hold(bundle.bundleId, bundle.digest, "damaged", "its content does not match its digest");
      continue;
    }
    try {
      served.push(check(bundle));
    } catch (error) {
      // Whatever the check throws, start-up goes on (SPEC §7): the bundle is only not served.
      hold(bundle.bundleId, bundle.digest, "invalid", error instanceof RuntimeError ? error.message : "it cannot be encoded");
    }
  }
  for (const { bundleId, problem } of stored.damaged) hold(bundleId, "", "damaged", problem);
  const diagnostics = unserved.map((bundle) => restoreDiagnostic(bundle, named.get(bundle.bundleId)?.workers ?? 0));
  return { served, unserved, diagnostics };
}

/** Whether a stored bundle matches its digest; one that cannot be encoded at all (a lone surrogate) is left to `check` to name. */
function digestMatches(bundle: ConfigBundle, digestOf: (bundle: ConfigBundle) => string): boolean {
  try {
    return digestOf(bundle) === bundle.digest;
  } catch {
    return true;
  }
}

function restoreDiagnostic(bundle: UnservedBundle, workers: number): StoreDiagnostic {
  const waiting = workers === 0 ? "" : `${workers} worker${workers === 1 ? "" : "s"} on it cannot run until then`;
  if (bundle.kind === "invalid") {
    return {
      severity: DiagnosticSeverity.ERROR,
      code: "store.bundle_invalid",
      message: `config bundle ${bundle.bundleId} breaks a rule added since it was stored (${bundle.cause}); it is not served: push a corrected bundle under a new id${waiting === "" ? "" : `; ${waiting} (create new ones on the new bundle)`}`,
    };
  }
  const digest = bundle.digest === "" ? "" : ` (digest ${bundle.digest})`;
  return {
    severity: DiagnosticSeverity.ERROR,
    code: "store.bundle_damaged",
    message: `config bundle ${bundle.bundleId} is damaged: ${bundle.cause}; push it again${waiting === "" ? "" : `${digest}: ${waiting}`}`,
  };
}

/**
 * Why a worker on this bundle reference cannot run, in words (its
 * connectivity's reason and its refusals say the same): damaged, breaking a
 * rule, or not on this runtime with that digest at all (a file removed by hand).
 */
export function unservedReason(bundleId: string, digest: string, unserved: UnservedBundle | undefined): string {
  if (unserved?.kind === "damaged") {
    // An unreadable file tells no digest (and no worker names one): the bundle that was pushed under the id.
    const which = digest === "" ? `id ${bundleId}` : `id ${bundleId}, digest ${digest}`;
    return `config bundle "${bundleId}" cannot be used: its stored copy is damaged (${unserved.cause}); push the same bundle (${which}) again`;
  }
  if (unserved?.kind === "invalid") {
    return `config bundle "${bundleId}" cannot be used: it breaks a rule added since it was stored (${unserved.cause}); push a corrected bundle under a new id and create new workers on it`;
  }
  return `config bundle "${bundleId}" with digest ${digest} is not on this runtime; push it again`;
}

/** The typed refusal of anything that would run a worker on a bundle that is not served (FAILED_PRECONDITION + BUNDLE_UNAVAILABLE). */
export function bundleUnavailable(message: string, bundleId: string, digest: string, unserved: UnservedBundle | undefined): RuntimeError {
  return new RuntimeError(Code.FailedPrecondition, ErrorReason.BUNDLE_UNAVAILABLE, message, {
    bundle_id: bundleId,
    digest,
    cause: unserved?.kind ?? "missing",
  });
}

/** What reconnectWorkers needs of a worker's session. */
export interface BundleWorkerSession {
  readonly worker: Worker;
  setConnectivity(connectivity: Connectivity): Promise<unknown>;
}

/**
 * Tells the workers of a bundle pushed again (served once more, without a
 * restart) that they can run: each takes its connectivity as of now, at
 * once for GetWorker and SendInput, and announces it so watchers see it too.
 */
export async function reconnectWorkers(sessions: Iterable<BundleWorkerSession>, bundleId: string, offer: ExecutionOffer): Promise<void> {
  const announced: Promise<unknown>[] = [];
  for (const session of sessions) {
    if (bundleIdOf(session.worker) === bundleId) announced.push(session.setConnectivity(workerConnectivity(offer, session.worker)));
  }
  await Promise.all(announced);
}
