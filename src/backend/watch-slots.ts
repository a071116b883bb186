import { Code } from "@connectrpc/connect";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { backendError } from "./backend-errors.js";

/** Bounds of the watches a Backend relays (BackendOptions.maxWatchersPerWorker / maxWatchers). */
export interface WatchSlotLimits {
  /** Most WatchWorker streams of one worker through the Backend. */
  perWorker: number;
  /** Most watch streams (WatchWorker and WatchRuntime) through the Backend in total. */
  total: number;
}

/** A place held by one relayed watch; release is idempotent. */
export interface WatchSlot {
  release(): void;
}

/**
 * Counts the client watches a Backend relays, so that clients cannot open
 * them without end (each holds a stream, a ring reader and buffers, whether
 * served by a shared upstream watch or its own): one past a bound is
 * RESOURCE_EXHAUSTED / LIMIT_EXCEEDED with the bound as "limit", as a
 * Runtime refuses its own watchers (runtime/watch-slot.ts). A place is
 * freed when the handler ends or when the client's signal aborts,
 * whichever is first: a streaming handler can outlive its client.
 */
export class WatchSlots {
  private total = 0;
  private readonly byWorker = new Map<string, number>();

  constructor(private readonly limits: WatchSlotLimits) {}

  /** A place for a WatchWorker of `workerId` on `runtimeId`. */
  worker(runtimeId: string, workerId: string, signal: AbortSignal): WatchSlot {
    const key = JSON.stringify([runtimeId, workerId]);
    const taken = this.byWorker.get(key) ?? 0;
    if (taken >= this.limits.perWorker) {
      throw backendError(
        Code.ResourceExhausted,
        ErrorReason.LIMIT_EXCEEDED,
        `worker ${workerId} of runtime ${runtimeId} already has ${taken} watchers through this Backend`,
        { limit: String(this.limits.perWorker), runtime_id: runtimeId },
      );
    }
    this.checkTotal();
    this.byWorker.set(key, taken + 1);
    return this.hold(signal, () => {
      const left = (this.byWorker.get(key) ?? 1) - 1;
      if (left > 0) this.byWorker.set(key, left);
      else this.byWorker.delete(key);
    });
  }

  /** A place for a WatchRuntime (counted in the total only). */
  runtime(signal: AbortSignal): WatchSlot {
    this.checkTotal();
    return this.hold(signal, () => {});
  }

  private checkTotal(): void {
    if (this.total >= this.limits.total) {
      throw backendError(
        Code.ResourceExhausted,
        ErrorReason.LIMIT_EXCEEDED,
        `the Backend already relays ${this.total} watches, its most; close one first`,
        { limit: String(this.limits.total) },
      );
    }
  }

  private hold(signal: AbortSignal, onRelease: () => void): WatchSlot {
    this.total++;
    let held = true;
    const release = (): void => {
      if (!held) return;
      held = false;
      signal.removeEventListener("abort", release);
      this.total--;
      onRelease();
    };
    if (signal.aborted) release();
    else signal.addEventListener("abort", release, { once: true });
    return { release };
  }
}
