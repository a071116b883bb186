import { Code } from "@connectrpc/connect";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import type { BackgroundWrites } from "./background-write.js";
import { RuntimeError } from "./errors.js";
import type { Logger } from "./logger.js";
import type { PendingWrites } from "./pending-writes.js";
import type { RuntimeHealth } from "./runtime-health.js";
import { settlesWithin } from "./settles-within.js";
import type { RuntimeStore } from "./store.js";
import type { WorkerSession } from "./worker-session.js";

/**
 * Why close() rejected: the store did not settle within the bound
 * (limits.cancelGraceMs + limits.flushTimeoutMs; a disk that hangs). `unsettled` names the store writes (and the workers
 * they were for) still pending; they may not be on disk, so a caller must
 * not report the close as durable. The runtime's streams are ended anyway.
 */
export class CloseTimeoutError extends RuntimeError {
  override readonly name = "CloseTimeoutError";

  constructor(
    readonly timeoutMs: number,
    readonly unsettled: readonly string[],
  ) {
    const what = unsettled.length > 0 ? unsettled.join(", ") : "no store write (a request or the drain did not finish)";
    super(
      Code.DeadlineExceeded,
      ErrorReason.STORE_UNAVAILABLE,
      `the runtime did not close within ${timeoutMs} ms; not settled, so it may not be on disk: ${what}`,
      { timeout_ms: String(timeoutMs) },
    );
  }
}

/** What draining and closing a runtime touch (createRuntime builds it). */
export interface ShutdownParts {
  health: RuntimeHealth;
  background: BackgroundWrites;
  sessions: () => Iterable<WorkerSession>;
  runtimeEvents: { closeAll(): void };
  store: RuntimeStore;
  writes: PendingWrites;
  logger: Logger;
  /** limits.cancelGraceMs + limits.flushTimeoutMs: a run winding down, then the store. */
  boundMs: number;
  /** Set when a drain's interruptions passed the bound: close() then does not wait the bound again. */
  expiredAt?: number;
}

/**
 * Runtime.drain: refuses new work, lets runs finish for up to `graceMs`
 * (or until `cut` aborts), then interrupts the rest, waiting for the
 * interruptions (a run winding down, then its writes) up to `boundMs`: a
 * store that hangs must not hold a shutdown before close() can tell what
 * did not settle.
 */
export async function drainRuntime(parts: ShutdownParts, graceMs: number, cut?: AbortSignal): Promise<void> {
  parts.health.startDraining();
  const deadline = Date.now() + graceMs;
  const running = (): boolean => [...parts.sessions()].some((s) => s.activeRun?.status === RunStatus.RUNNING);
  // A run waiting for approval is not waited for: interruptAll parks it, its wait being durable.
  while (Date.now() < deadline && !cut?.aborted && running()) {
    await new Promise((resolve) => setTimeout(resolve, Math.min(50, Math.max(1, deadline - Date.now()))));
  }
  const started = Date.now();
  const interrupted = Promise.all([...parts.sessions()].map((session) => session.interruptAll()));
  if (!(await settlesWithin(interrupted, parts.boundMs))) parts.expiredAt ??= started + parts.boundMs;
}

/**
 * Runtime.close: drains at once, waits for what the drain set off and the
 * requests in flight, ends every stream and closes the store, all within
 * `boundMs` (what is left of it, when a drain before already passed it).
 * Past it the streams are ended all the same, the unsettled writes are
 * logged at error level and close rejects with a {@link CloseTimeoutError},
 * never resolving as if they were durable.
 */
export async function closeRuntime(parts: ShutdownParts): Promise<void> {
  const { health, background, logger, boundMs } = parts;
  const deadline = parts.expiredAt ?? Date.now() + boundMs;
  health.stop();
  background.close();
  const endStreams = (): void => {
    health.close();
    for (const session of parts.sessions()) session.events.closeAll();
    parts.runtimeEvents.closeAll();
  };
  const timedOut = (): CloseTimeoutError => {
    const error = new CloseTimeoutError(boundMs, parts.writes.unsettled());
    logger.error("runtime close timed out", { timeout_ms: boundMs, unsettled: error.unsettled });
    return error;
  };
  // What the drain set off (a run's end, the worker's snapshot, runtime events) and requests in flight land before the store closes.
  const flushed = (async () => {
    await drainRuntime(parts, 0);
    await background.settled();
  })();
  if (!(await settlesWithin(flushed, deadline - Date.now()))) {
    endStreams();
    throw timedOut();
  }
  endStreams();
  if (!(await settlesWithin(parts.store.close(), deadline - Date.now()))) throw timedOut();
}
