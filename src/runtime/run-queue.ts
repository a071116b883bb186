import { Code } from "@connectrpc/connect";
import { BusyPolicy } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import type { Run } from "../../gen/worker_runtime/v1/run_pb.js";
import { ConnectivityState, type Worker, WorkerStatus } from "../../gen/worker_runtime/v1/worker_pb.js";
import { RuntimeError } from "./errors.js";
import { byteBounds, type Limits } from "./limits.js";
import type { InputOptions } from "./runtime-api.js";
import { callerTraceContext } from "./run-tracing.js";

/**
 * The queue and busy policy of one worker, with no I/O: which input may be
 * accepted, whether it starts at once, waits, or interrupts the active run,
 * and in which order queued runs start. The session applies the decisions
 * and does the writes.
 */

/** What to do with accepted input. */
export type Admission =
  /** The worker is idle: the run takes the slot. */
  | { kind: "start" }
  /** The worker is busy: the run waits at the tail (ENQUEUE). */
  | { kind: "enqueue" }
  /** The worker is busy: the run goes ahead of ENQUEUE'd ones and the active run is cancelled (INTERRUPT). */
  | { kind: "interrupt"; activeRunId: string };

/** How many runs wait, and how many of them came by INTERRUPT. */
export interface Waiting {
  queued: number;
  interrupting: number;
}

/**
 * Decides under the busy policy; throws WORKER_BUSY (REJECT, or no policy)
 * or QUEUE_FULL when the input cannot be accepted. An INTERRUPT takes the
 * active run's place rather than a queue place, so ENQUEUE'd inputs never
 * refuse it; the interrupting inputs waiting for that place are bounded by
 * the same depth among themselves.
 */
export function admit(
  policy: BusyPolicy,
  busyWith: string | undefined,
  waiting: Waiting,
  maxQueueDepth: number,
  workerId: string,
): Admission {
  if (busyWith === undefined) return { kind: "start" };
  if (policy !== BusyPolicy.ENQUEUE && policy !== BusyPolicy.INTERRUPT) {
    throw new RuntimeError(Code.FailedPrecondition, ErrorReason.WORKER_BUSY, `worker ${workerId} is busy with run ${busyWith}`, {
      active_run_id: busyWith,
    });
  }
  const interrupting = policy === BusyPolicy.INTERRUPT;
  const count = interrupting ? waiting.interrupting : waiting.queued;
  if (count >= maxQueueDepth) {
    const what = interrupting ? "interrupting inputs waiting" : "queued inputs";
    throw new RuntimeError(Code.ResourceExhausted, ErrorReason.QUEUE_FULL, `worker ${workerId} already has ${count} ${what}`, {
      max_queue_depth: String(maxQueueDepth),
    });
  }
  return interrupting ? { kind: "interrupt", activeRunId: busyWith } : { kind: "enqueue" };
}

/**
 * Throws QUEUE_FULL when queueing `text` would take the queued inputs past
 * `maxQueuedInputBytes`: a watcher's snapshot carries every queued run, and
 * it must fit one message (see limits.ts, byteBounds).
 */
function checkQueuedBytes(queuedBytes: number, text: string, maxQueuedInputBytes: number, workerId: string): void {
  const inputBytes = Buffer.byteLength(text, "utf8");
  if (queuedBytes + inputBytes > maxQueuedInputBytes) {
    throw new RuntimeError(
      Code.ResourceExhausted,
      ErrorReason.QUEUE_FULL,
      `worker ${workerId} already has ${queuedBytes} bytes of queued input; ${inputBytes} more would pass ${maxQueuedInputBytes}`,
      { max_queued_input_bytes: String(maxQueuedInputBytes) },
    );
  }
}

/**
 * Throws WORKER_FAILED or WORKER_STOPPED: the reasons a worker will never
 * take input, whatever else is refused at the same time. StreamInput checks
 * it before refusing a full watch slot (transient), so the client is told
 * the permanent cause instead of retrying in vain.
 */
export function checkNotEnded(worker: Worker): void {
  const workerId = worker.ref?.workerId ?? "";
  if (worker.status === WorkerStatus.FAILED) {
    throw new RuntimeError(Code.FailedPrecondition, ErrorReason.WORKER_FAILED, `worker ${workerId} has failed: ${worker.failureMessage}`);
  }
  if (worker.status === WorkerStatus.STOPPED) {
    throw new RuntimeError(Code.FailedPrecondition, ErrorReason.WORKER_STOPPED, `worker ${workerId} is stopped`);
  }
}

/**
 * Throws the typed reason a worker takes no input: the runtime drains
 * (checked by the caller), the worker failed or stopped, its profile cannot
 * be had (`checkProfile`: its config bundle is not served), or no execution
 * backend can run it.
 */
export function checkAcceptsInput(worker: Worker, hasBackend: boolean, checkProfile?: (worker: Worker) => void): void {
  const workerId = worker.ref?.workerId ?? "";
  checkNotEnded(worker);
  checkProfile?.(worker);
  const connectivity = worker.connectivity;
  if (!hasBackend || connectivity?.state !== ConnectivityState.CONNECTED) {
    const reason = connectivity?.reason || "no execution backend is connected";
    throw new RuntimeError(Code.FailedPrecondition, ErrorReason.WORKER_NOT_CONNECTED, `worker ${workerId} cannot run input: ${reason}`, {
      reason,
    });
  }
}

/**
 * Runs waiting for the slot, in start order: INTERRUPT'd runs first (FIFO
 * among themselves), then ENQUEUE'd ones (FIFO).
 */
export class RunQueue {
  private readonly runs: Run[] = [];
  /**
   * The log fields and trace context of the call that sent each run's
   * input, so the run logs with that call's request id and its span is that
   * call's child, rather than those of whatever ended the run before it.
   */
  private readonly callers = new WeakMap<Run, InputOptions>();
  /** How many runs at the head came by INTERRUPT. */
  private interruptsAtHead = 0;

  /** Queued runs, next to start first. */
  get items(): readonly Run[] {
    return this.runs;
  }

  get length(): number {
    return this.runs.length;
  }

  /**
   * Decides under the busy policy ({@link admit}) and, for a run that
   * would wait here, also by the bytes of the queued inputs (QUEUE_FULL).
   */
  admit(policy: BusyPolicy, busyWith: string | undefined, text: string, limits: Limits, workerId: string): Admission {
    const waiting = { queued: this.runs.length, interrupting: this.interruptsAtHead };
    const admission = admit(policy, busyWith, waiting, limits.maxQueueDepth, workerId);
    if (admission.kind !== "start") checkQueuedBytes(this.inputBytes(), text, byteBounds(limits).maxQueuedInputBytes, workerId);
    return admission;
  }

  /** UTF-8 bytes of the queued inputs together. */
  inputBytes(): number {
    let bytes = 0;
    for (const run of this.runs) bytes += Buffer.byteLength(run.input?.text ?? "", "utf8");
    return bytes;
  }

  /**
   * Adds a run: behind the other interrupting runs when `interrupting`, else
   * at the tail. The run keeps the accepting call's log fields and trace
   * context, so whenever it starts its log lines and its span belong to that
   * call (run-tracing.ts).
   */
  add(run: Run, interrupting: boolean, caller?: InputOptions): void {
    const traceContext = callerTraceContext(caller?.traceContext);
    this.callers.set(run, caller?.logFields ? { logFields: caller.logFields, traceContext } : { traceContext });
    if (interrupting) this.runs.splice(this.interruptsAtHead++, 0, run);
    else this.runs.push(run);
  }

  /** Takes the run to start next. */
  next(): Run | undefined {
    const run = this.runs.shift();
    if (run && this.interruptsAtHead > 0) this.interruptsAtHead--;
    return run;
  }

  /** The log fields and trace context of the call that queued a run. */
  callerOf(run: Run): InputOptions | undefined {
    return this.callers.get(run);
  }

  /** A queued run by id. */
  find(runId: string): Run | undefined {
    return this.runs.find((run) => run.runId === runId);
  }

  /** Removes a queued run by id; returns it, or undefined when it is not queued. */
  remove(runId: string): Run | undefined {
    const index = this.runs.findIndex((run) => run.runId === runId);
    if (index < 0) return undefined;
    const [run] = this.runs.splice(index, 1);
    if (index < this.interruptsAtHead) this.interruptsAtHead--;
    return run;
  }

  /** Removes and returns every queued run. */
  clear(): Run[] {
    this.interruptsAtHead = 0;
    return this.runs.splice(0);
  }
}
