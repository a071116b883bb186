import { DiagnosticSeverity, RuntimeStatus } from "../../gen/worker_runtime/v1/runtime_pb.js";
import { Code } from "@connectrpc/connect";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { RuntimeError } from "./errors.js";
import { errorLogFields } from "./error-log-fields.js";
import type { Logger } from "./logger.js";
import type { RuntimeStore } from "./store.js";
import { isStoreWriteFailure } from "./store-errors.js";
import { describeStoreFailure, StoreHealth } from "./store-health.js";

/** What {@link RuntimeHealth} needs from its runtime. */
export interface RuntimeHealthInit {
  store: RuntimeStore;
  logger: Logger;
  probeIntervalMs: number;
  /** Records an operator-visible diagnostic. */
  addDiagnostic(severity: DiagnosticSeverity, code: string, message: string): void;
}

/**
 * The runtime's status (SERVING, DRAINING, DEGRADED) and what drives it:
 * draining for shutdown, store write outcomes per write path, the probe
 * timer that notices a store writing again, and the status listeners (the
 * gRPC health service).
 */
export class RuntimeHealth {
  private draining = false;
  private isClosed = false;
  private readonly storeHealth = new StoreHealth();
  private probe: NodeJS.Timeout | undefined;
  private readonly listeners = new Set<(status: RuntimeStatus) => void>();

  constructor(private readonly init: RuntimeHealthInit) {}

  /** SERVING, DRAINING or DEGRADED (store writes failing). */
  get status(): RuntimeStatus {
    if (this.draining) return RuntimeStatus.DRAINING;
    if (this.storeHealth.degraded) return RuntimeStatus.DEGRADED;
    return RuntimeStatus.SERVING;
  }

  /** Store writes are failing now (whatever the status shows while draining). */
  get storeDegraded(): boolean {
    return this.storeHealth.degraded;
  }

  /** True once {@link close} ran. */
  get closed(): boolean {
    return this.isClosed;
  }

  /** Calls `listener` on every status change, and once on {@link close}; returns the unsubscribe function. */
  onStatusChange(listener: (status: RuntimeStatus) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Refuses new work from now on (idempotent). */
  startDraining(): void {
    if (this.draining) return;
    this.draining = true;
    this.emitStatus();
  }

  /** Throws RUNTIME_DRAINING while the runtime shuts down. */
  checkAcceptingWork(): void {
    if (this.draining) {
      throw new RuntimeError(Code.Unavailable, ErrorReason.RUNTIME_DRAINING, "the runtime is shutting down and takes no new work");
    }
  }

  /** Records a store write outcome per write path; DEGRADED while any path fails. */
  storeResult(source: string, error: unknown): void {
    const change = this.storeHealth.report(source, error);
    if (change === "failed") {
      const why = describeStoreFailure(error);
      this.init.logger.error("store write failed; runtime degraded", {
        source,
        reason: why,
        ...errorLogFields(error),
      });
      this.init.addDiagnostic(DiagnosticSeverity.ERROR, "store.write_failed", `the store cannot write (${why}); the runtime is degraded`);
    }
    this.afterChange(change);
  }

  /**
   * A request ended. One refused STORE_UNAVAILABLE because its write failed
   * counts as that write's path failing (source "requests"): the same
   * diagnostic, DEGRADED and the probe to recover as a failed event write.
   * On a full disk with no run writing, CreateWorker was refused for seconds
   * while the runtime said SERVING and stayed in every probe's rotation.
   * A request that succeeds (`error` undefined) clears that path: a store
   * without a write probe would otherwise stay DEGRADED for ever.
   */
  requestSettled(error: unknown): void {
    if (error === undefined) {
      this.storeResult("requests", undefined);
      return;
    }
    if (!(error instanceof RuntimeError) || error.reason !== ErrorReason.STORE_UNAVAILABLE) return;
    if (isStoreWriteFailure(error.cause)) this.storeResult("requests", error.cause);
  }

  /**
   * A store call on `source` has not answered within its bound (`message`
   * says which): DEGRADED until it answers, whatever probes write meanwhile.
   */
  storeNotAnswering(source: string, message: string): void {
    // Told once per call: a delete retried while the same call is unanswered waits on that call.
    if (this.storeHealth.isWaiting(source)) return;
    const change = this.storeHealth.waiting(source, true);
    this.init.logger.error("store call not answered; runtime degraded", { source, reason: message });
    this.init.addDiagnostic(DiagnosticSeverity.ERROR, "store.not_answering", message);
    this.afterChange(change);
  }

  /** The store call on `source` that had not answered has now answered (its outcome is reported on its own). */
  storeAnswered(source: string): void {
    this.afterChange(this.storeHealth.waiting(source, false));
  }

  /** The runtime-wide log is damaged: degraded until a probe write succeeds. */
  runtimeLogDamaged(message: string): void {
    this.afterChange(this.storeHealth.report("runtime-events", new Error(message)));
  }

  /** Forgets a deleted worker's failing write paths. */
  forgetWorker(workerId: string): void {
    this.afterChange(this.storeHealth.forget(`worker:${workerId}:`));
  }

  /**
   * The runtime closed: listeners hear it once more (with {@link closed}
   * true, so a health Watch ends rather than holding the server's close
   * open) and are then dropped.
   */
  close(): void {
    this.stop();
    if (this.isClosed) return;
    this.isClosed = true;
    this.emitStatus();
    this.listeners.clear();
  }

  /** Stops the probe timer (on close). */
  stop(): void {
    clearInterval(this.probe);
    this.probe = undefined;
  }

  private afterChange(change: "failed" | "recovered" | undefined): void {
    if (change === "recovered") this.init.addDiagnostic(DiagnosticSeverity.INFO, "store.recovered", "store writes succeed again");
    if (change !== undefined) this.emitStatus();
    if (this.storeHealth.degraded) this.startProbe();
    else this.stop();
  }

  /**
   * A path that failed may never be written again (an idle worker), which
   * would leave the runtime DEGRADED for good; so while degraded, a probe
   * write checks now and then whether the store can write again.
   */
  private startProbe(): void {
    const probeWrite = this.init.store.probeWrite?.bind(this.init.store);
    // A write refused after close (the store is closed) must not start probing a store nobody uses any more.
    if (this.probe || !probeWrite || this.isClosed) return;
    this.probe = setInterval(() => {
      // Not a background write: both outcomes are handled here, and a failed probe changes nothing.
      probeWrite().then(
        () => this.afterChange(this.storeHealth.clear()),
        () => {},
      );
    }, this.init.probeIntervalMs);
    this.probe.unref();
  }

  private emitStatus(): void {
    const status = this.status;
    for (const listener of this.listeners) listener(status);
  }
}
