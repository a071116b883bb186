import { create } from "@bufbuild/protobuf";
import { cloneMessage } from "./message-clone.js";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { type BusyPolicy, UsageSchema } from "../../gen/worker_runtime/v1/common_pb.js";
import type { WorkerEvent } from "../../gen/worker_runtime/v1/events_pb.js";
import { RunSchema, RunStatus, type Run } from "../../gen/worker_runtime/v1/run_pb.js";
import { type Connectivity, WorkerSchema, WorkerStatus, type Input, type Worker } from "../../gen/worker_runtime/v1/worker_pb.js";
import { ApprovalFlow, type ApprovalFlowHost } from "./approval-flow.js";
import { idempotencyConflict, notFound } from "./errors.js";
import type { DurableEventStream } from "./event-stream.js";
import type { RunOutcome } from "./execution-backend.js";
import { inputFingerprint } from "./fingerprint.js";
import { ObservedState } from "./observed-state.js";
import { RequestIdMemory } from "./request-id-memory.js";
import { endRun, launchRun, settledWithin } from "./run-execution.js";
import { checkAcceptsInput, RunQueue } from "./run-queue.js";
import { addUsage, usageOf } from "./run-sink.js";
import { activeOf, busyRunOf, heldRunOf, holdsExecution, setActiveRun, type ActiveRun, type RunSlot } from "./run-slot.js";
import type { SessionDeps } from "./session-deps.js";
import { interruptUnfinished, parkedRunSeen, restoredWorkerState } from "./session-restore.js";
import type { InputOptions } from "./runtime-api.js";
import type { RestoredWorker, WorkerRecord } from "./store.js";
import { WorkerJournal } from "./worker-journal.js";
import { WorkerStop } from "./worker-stop.js";

/**
 * One Worker at run time: its state, its single-flight run slot (see run-slot.ts) with the bounded queue (run-queue.ts),
 * and its ordered event stream with the observed state that snapshots are cut from. Writes go through its journal;
 * runs execute through run-execution.ts and write through their sink (run-sink.ts).
 */
export class WorkerSession {
  readonly workerId: string;
  readonly events: DurableEventStream<WorkerEvent>;
  private readonly journal: WorkerJournal;
  private readonly observed: ObservedState;
  private readonly queue = new RunQueue();
  private slot: RunSlot = { kind: "idle" };
  private readonly workerStop: WorkerStop;
  private readonly requestIds: RequestIdMemory<{ runId: string; fingerprint: string }>;
  /** The session as run executions and the approval flow see it. */
  private readonly host: ApprovalFlowHost;
  private readonly approvals: ApprovalFlow;

  private constructor(
    readonly worker: Worker,
    readonly record: Omit<WorkerRecord, "worker">,
    private readonly deps: SessionDeps,
    restored: RestoredWorker | undefined,
    readonly transcriptCut = restored?.transcriptCut, // where damage found at open cut the transcript short; ReadTranscript's `cut`
  ) {
    this.workerId = worker.ref?.workerId ?? "";
    this.requestIds = new RequestIdMemory(deps.limits.requestIdMemory);
    for (const { requestId, runId, fingerprint } of restored?.recentRequestIds ?? [])
      this.requestIds.remember(requestId, { runId, fingerprint });
    this.observed = new ObservedState(worker, restored?.lastEventSeq ?? 0n, deps.cursorStreamOf(worker.ref?.workerId ?? ""));
    this.journal = new WorkerJournal(worker, record, deps, restored, (item, event) => {
      this.observed.apply(event);
      if (item.seq > 0n) this.worker.lastEventSeq = item.seq;
    });
    this.events = this.journal.events;
    this.host = {
      worker,
      journal: this.journal,
      deps,
      slot: () => this.slot,
      setSlot: (slot) => (this.slot = slot),
      endHeldRun: (run, outcome) => this.endHeldRun(run, outcome),
      getRun: (runId) => this.getRun(runId),
    };
    this.approvals = new ApprovalFlow(this.host);
    this.workerStop = new WorkerStop(worker, () => this.cancelEverything(false), this.journal);
  }

  /** Creates the session of a new worker and persists it. */
  static async create(worker: Worker, record: Omit<WorkerRecord, "worker">, deps: SessionDeps): Promise<WorkerSession> {
    const session = new WorkerSession(worker, record, deps, undefined);
    await deps.store.putWorker({ worker: cloneMessage(WorkerSchema, worker), ...record });
    await session.journal.emitWorker("created");
    return session;
  }

  /**
   * Restores a session from the store: a run waiting for approval keeps
   * waiting, parked (see run-slot.ts); other runs in flight or queued at the
   * stop become INTERRUPTED.
   */
  static async restore(restored: RestoredWorker, deps: SessionDeps, connectivity: Connectivity): Promise<WorkerSession> {
    const { worker, wasBusy, parked } = restoredWorkerState(restored, connectivity);
    const { createRequestId, createFingerprint } = restored.record;
    const session = new WorkerSession(worker, { createRequestId, createFingerprint }, deps, restored);
    if (restored.quarantined !== undefined) return session;
    if (parked) session.slot = { kind: "parked", run: parked };
    if (parked) session.observed.apply(parkedRunSeen(parked));
    await interruptUnfinished(restored, parked, wasBusy, session.journal, deps.store, worker);
    return session;
  }

  /** Sets the worker's connectivity and announces it (its config bundle was pushed again: it can run). */
  setConnectivity(connectivity: Connectivity): Promise<unknown> {
    this.worker.connectivity = connectivity;
    return this.journal.emitWorker();
  }

  /** The run holding the slot (executing, waiting for approval, or parked), for GetRun, ListRuns and drains. */
  get activeRun(): Run | undefined {
    return heldRunOf(this.slot);
  }

  /** Queued runs, next to start first. */
  get queuedRuns(): readonly Run[] {
    return this.queue.items;
  }

  /** The snapshot as of the last delivered event (see ObservedState). */
  snapshot(): ReturnType<ObservedState["snapshot"]> {
    return this.observed.snapshot();
  }

  /**
   * Accepts input under the busy policy and returns the run once it is durably accepted.
   * Single-flight: the state change happens before the first await, so concurrent sends see each other.
   */
  async send(input: Input, policy: BusyPolicy, requestId: string, caller?: InputOptions): Promise<Run> {
    const fingerprint = requestId !== "" ? inputFingerprint(input.text) : ""; // only idempotency needs it
    const prior = requestId !== "" ? this.requestIds.get(requestId) : undefined;
    if (prior) {
      if (prior.fingerprint !== fingerprint) throw idempotencyConflict(requestId, "with different input", { run_id: prior.runId });
      return this.getRun(prior.runId);
    }
    this.deps.checkAcceptingWork();
    checkAcceptsInput(this.worker, this.deps.backend !== undefined, this.deps.checkProfile);
    const admission = this.queue.admit(policy, busyRunOf(this.slot)?.runId, input.text, this.deps.limits, this.workerId);
    const run = create(RunSchema, { runId: this.deps.newRunId(), worker: this.worker.ref, input, status: RunStatus.QUEUED, requestId });
    run.usage = create(UsageSchema);
    run.createdAt = timestampFromDate(this.deps.now());
    if (requestId !== "") this.requestIds.remember(requestId, { runId: run.runId, fingerprint });
    const accepted = this.journal.recordRun(run, true);
    const snapshotOfAccepted = cloneMessage(RunSchema, run);
    this.queue.add(run, admission.kind === "interrupt", caller);
    if (admission.kind === "start") {
      // Reserve the slot now (single flight), start once the acceptance is durable.
      this.slot = { kind: "starting", run };
    } else {
      this.worker.queuedRuns = this.queue.length;
      this.deps.background.start(this.journal.emitWorker());
    }
    if (admission.kind === "interrupt") {
      // Same path as CancelRun, so a run that ignores its signal is still ended after the grace period.
      const fields = { worker_id: this.workerId, run_id: admission.activeRunId };
      this.deps.background.start(this.cancel(fields.run_id), { logger: this.deps.logger, message: "could not interrupt a run", fields });
    }
    try {
      await accepted;
    } catch (error) {
      // Not durably accepted: the client is told so, so it must not run.
      if (requestId !== "" && this.requestIds.get(requestId)?.runId === run.runId) this.requestIds.forget(requestId);
      if (this.queue.remove(run.runId)) this.worker.queuedRuns = this.queue.length;
      throw error;
    } finally {
      if (this.slot.kind === "starting" && this.slot.run === run) {
        this.slot = { kind: "idle" };
        this.startNext();
      }
    }
    return snapshotOfAccepted;
  }

  /**
   * Cancels a queued or running run and returns it once it has ended (by force after the grace
   * period if it ignores its AbortSignal); a finished run is returned as it is.
   */
  async cancel(runId: string, interrupted = false): Promise<Run> {
    const queued = this.queue.remove(runId);
    if (queued) {
      await this.endQueuedRun(queued, interrupted);
      await this.journal.saveWorker();
      return cloneMessage(RunSchema, queued);
    }
    if (this.slot.kind === "parked" && this.slot.run.runId === runId) return this.approvals.endParked(this.slot.run);
    const active = activeOf(this.slot);
    if (!active || active.run.runId !== runId) return this.getRun(runId);
    const wasInterrupted = this.slot.kind === "stopping" && this.slot.interrupted;
    this.slot = { kind: "stopping", active, interrupted: wasInterrupted || interrupted };
    active.controller.abort();
    await settledWithin(active.done, this.deps.limits.cancelGraceMs);
    if (holdsExecution(this.slot, active)) {
      this.deps.logger.warn("run ignored its AbortSignal; ended by force", { worker_id: this.workerId, run_id: runId });
      await this.endHeldRun(active.run, { kind: "cancelled" });
    }
    return cloneMessage(RunSchema, active.run);
  }

  /** Approves or rejects the tool call a run is waiting on (see approval-flow.ts). */
  resolveApproval(...args: Parameters<ApprovalFlow["resolve"]>): Promise<Run> {
    return this.approvals.resolve(...args);
  }

  /** Stops the worker: no more input, queued and active runs cancelled. Idempotent. */
  stop(): Promise<void> {
    return this.workerStop.stop();
  }

  /**
   * Quarantines the worker: its stored state is damaged, so it becomes FAILED
   * with `message` (what its users read), its runs end and it takes no more
   * input. The snapshot write may still succeed (stores allow it) so the state survives.
   */
  async quarantine(message: string): Promise<void> {
    if (this.worker.status === WorkerStatus.FAILED) return;
    this.worker.status = WorkerStatus.FAILED;
    this.worker.failureMessage = message;
    await this.cancelEverything(false).catch(() => {});
    await this.journal.saveWorker().catch(() => {});
  }

  /** Marks the worker deleted (later writes skipped); false takes it back, as a failed store delete leaves it. */
  markDeleted(deleted = true): void {
    this.journal.markDeleted(deleted);
  }

  /** Interrupts every run for shutdown; the worker stays usable after restart. */
  async interruptAll(): Promise<void> {
    await this.cancelEverything(true);
  }

  /** A run as memory knows it better than the store: active, queued, or a version the store failed to write. */
  liveRun(runId: string): Run | undefined {
    const live = this.activeRun?.runId === runId ? this.activeRun : (this.queue.find(runId) ?? this.journal.unsaved.get(runId));
    return live && cloneMessage(RunSchema, live);
  }

  /** Returns a run from memory or the store. */
  async getRun(runId: string): Promise<Run> {
    const stored = this.liveRun(runId) ?? (await this.deps.store.getRun(this.workerId, runId));
    if (!stored) throw notFound("run_id", runId);
    return stored;
  }

  /** Ends every queued run and cancels the active one even when a record fails (a full disk), then throws the failure. */
  private async cancelEverything(interrupted: boolean): Promise<void> {
    const ended = this.queue.clear().map((run) => this.endQueuedRun(run, interrupted));
    const active = activeOf(this.slot);
    const cancelled = (async () => {
      // A durable wait survives a shutdown, parked; a stop or quarantine ends a parked run.
      if (interrupted && active?.run.status === RunStatus.AWAITING_APPROVAL && this.slot.kind === "running")
        return this.approvals.park(active);
      if (this.slot.kind === "parked" && !interrupted) await this.approvals.endParked(this.slot.run);
      if (active) await this.cancel(active.run.runId, interrupted);
    })();
    for (const outcome of await Promise.allSettled([...ended, cancelled])) if (outcome.status === "rejected") throw outcome.reason;
  }

  private async endQueuedRun(run: Run, interrupted: boolean): Promise<void> {
    endRun(run, { kind: "cancelled" }, interrupted, this.deps.now());
    this.worker.queuedRuns = this.queue.length;
    await this.journal.recordRun(run);
  }

  /** Starts the next queued run, or goes idle. Synchronous up to execute(). */
  private startNext(): void {
    const run = this.queue.next();
    this.worker.queuedRuns = this.queue.length;
    if (!run || this.worker.status === WorkerStatus.STOPPED) {
      setActiveRun(this.worker, undefined);
      if (this.worker.status === WorkerStatus.RUNNING) this.worker.status = WorkerStatus.IDLE;
      this.deps.background.start(this.journal.saveWorker());
      return;
    }
    run.status = RunStatus.RUNNING;
    run.startedAt = timestampFromDate(this.deps.now());
    this.worker.status = WorkerStatus.RUNNING;
    setActiveRun(this.worker, run);
    const active: ActiveRun = { run, controller: new AbortController(), done: Promise.resolve(), ...this.queue.callerOf(run) };
    this.slot = { kind: "running", active };
    this.deps.background.start(this.journal.recordRun(run));
    this.deps.background.start(this.journal.saveWorker());
    launchRun(active, this.host);
  }

  /**
   * Frees the slot of the run it holds (executing or parked), ends the run
   * with its outcome (INTERRUPTED when a shutdown stopped it) and starts the next one.
   */
  private async endHeldRun(run: Run, outcome: RunOutcome): Promise<void> {
    const interrupted = this.slot.kind === "stopping" && this.slot.interrupted;
    this.slot = { kind: "idle" };
    endRun(run, outcome, interrupted, this.deps.now());
    addUsage(usageOf(this.worker), run.usage);
    const recorded = this.journal.recordRun(run);
    this.deps.background.start(recorded);
    this.startNext();
    await recorded.catch((error: unknown) => {
      this.deps.logger.error("could not persist the end of a run", { worker_id: this.workerId, run_id: run.runId, cause: String(error) });
    });
  }
}
