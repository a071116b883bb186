import { clone, create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { UsageSchema, type Usage } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { WorkerEventSchema, type WorkerEvent } from "../../gen/worker_runtime/v1/events_pb.js";
import type { Profile } from "../../gen/worker_runtime/v1/profile_pb.js";
import {
  PendingApprovalSchema,
  ProviderRetrySchema,
  RunErrorSchema,
  RunSchema,
  RunStatus,
  StopReason,
  type Run,
} from "../../gen/worker_runtime/v1/run_pb.js";
import { TranscriptEntrySchema, type TranscriptEntry } from "../../gen/worker_runtime/v1/transcript_pb.js";
import {
  ConnectivityState,
  type Connectivity,
  WorkerSchema,
  WorkerStatus,
  type Input,
  type Worker,
} from "../../gen/worker_runtime/v1/worker_pb.js";
import { BusyPolicy } from "../../gen/worker_runtime/v1/common_pb.js";
import { ApprovalDecision } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import { abortError, notFound, RuntimeError } from "./errors.js";
import { encodeWorkerEvent } from "./event-encoding.js";
import { DurableEventStream } from "./event-stream.js";
import {
  RunClosedError,
  type ApprovalResult,
  type ExecutionBackend,
  type PendingToolCall,
  type RunOutcome,
  type RunSink,
} from "./execution-backend.js";
import { inputFingerprint } from "./fingerprint.js";
import { ObservedState } from "./observed-state.js";
import type { Limits } from "./limits.js";
import type { Logger } from "./logger.js";
import { StoreSequenceError, StoreWriteError, type RestoredWorker, type RuntimeStore, type WorkerRecord } from "./store.js";

/** What a session needs from its Runtime. */
export interface SessionDeps {
  store: RuntimeStore;
  backend: ExecutionBackend | undefined;
  limits: Limits;
  logger: Logger;
  now(): Date;
  newRunId(): string;
  profileOf(worker: Worker): Profile;
  workspaceDirOf(worker: Worker): string | undefined;
  /** Reports every store write outcome per write path (runtime health). */
  onStoreResult(source: string, error: unknown): void;
  /** Publishes a worker change on the runtime-wide stream. */
  publishWorker(worker: Worker): void;
  /** Publishes a run change on the runtime-wide stream. */
  publishRun(run: Run): void;
  /** Refuses new input while the runtime drains. */
  checkAcceptingWork(): void;
}

interface ActiveRun {
  run: Run;
  controller: AbortController;
  closed: boolean;
  /** Set when the runtime shuts down: a cancelled run becomes INTERRUPTED. */
  interrupted: boolean;
  approval?: { toolCallId: string; resolve(result: ApprovalResult): void };
  done: Promise<void>;
}

/**
 * One Worker at run time: its state, its single-flight run slot with the
 * bounded queue, the sink its execution backend writes to, and its ordered
 * event stream with the in-flight accumulator that snapshots are cut from.
 */
export class WorkerSession {
  readonly events: DurableEventStream<WorkerEvent>;
  private readonly observed: ObservedState;
  private readonly queue: Run[] = [];
  /** How many runs at the head of the queue came by INTERRUPT (they keep FIFO order among themselves). */
  private interruptsAtHead = 0;
  private active: ActiveRun | undefined;
  private stopping: Promise<void> | undefined;
  /** A run accepted on an idle worker, waiting for its acceptance to be durable before it starts. */
  private pendingStart: Run | undefined;
  /** Set once the worker is deleted: nothing more is written for it. */
  private deleted = false;
  private readonly requestIds = new Map<string, { runId: string; fingerprint: string }>();
  private runCount: number;
  /** Number of open WatchWorker / StreamInput streams. */
  watchers = 0;

  private constructor(
    readonly worker: Worker,
    readonly record: Omit<WorkerRecord, "worker">,
    private readonly deps: SessionDeps,
    restored: RestoredWorker | undefined,
  ) {
    this.runCount = restored?.runCount ?? 0;
    for (const { requestId, runId, fingerprint } of restored?.recentRequestIds ?? []) {
      this.rememberRequestId(requestId, runId, fingerprint);
    }
    const workerId = worker.ref?.workerId ?? "";
    this.observed = new ObservedState(worker, restored?.lastEventSeq ?? 0n);
    this.events = new DurableEventStream<WorkerEvent>({
      stream: "w",
      lastSeq: restored?.lastEventSeq ?? 0n,
      lastTranscriptSeq: restored?.lastTranscriptSeq ?? 0n,
      encode: encodeWorkerEvent,
      persistTranscript: (transcript) => deps.store.appendTranscript(workerId, transcript),
      persistEvents: (events) => deps.store.appendEvents(workerId, events),
      onPersistResult: (error) => deps.onStoreResult(`worker:${workerId}:events`, error),
      onDeliver: (item, event) => {
        this.observed.apply(event);
        if (item.seq > 0n) this.worker.lastEventSeq = item.seq;
      },
      maxSubscriberBacklog: deps.limits.maxSubscriberBacklog,
    });
  }

  /** Creates the session of a new worker and persists it. */
  static async create(worker: Worker, record: Omit<WorkerRecord, "worker">, deps: SessionDeps): Promise<WorkerSession> {
    const session = new WorkerSession(worker, record, deps, undefined);
    await deps.store.putWorker({ worker: clone(WorkerSchema, worker), ...record });
    await session.emitWorker();
    return session;
  }

  /**
   * Restores a session from the store. Runs that were in flight or queued
   * when the runtime stopped become INTERRUPTED; the worker is usable again.
   */
  static async restore(restored: RestoredWorker, deps: SessionDeps, connectivity: Connectivity): Promise<WorkerSession> {
    const worker = clone(WorkerSchema, restored.record.worker);
    const { createRequestId, createFingerprint } = restored.record;
    // Fix the restored state before the session exists, so its observed state
    // (what snapshots show) starts from it. Connectivity is derived from this
    // runtime's configuration, not from what was stored.
    const wasBusy = worker.status === WorkerStatus.RUNNING || worker.activeRunId !== "" || worker.queuedRuns !== 0;
    worker.lastEventSeq = restored.lastEventSeq;
    worker.connectivity = connectivity;
    if (restored.quarantined !== undefined) {
      worker.status = WorkerStatus.FAILED;
      worker.failureMessage = restored.quarantined;
    } else if (worker.status === WorkerStatus.RUNNING) {
      worker.status = WorkerStatus.IDLE;
    }
    worker.activeRunId = "";
    worker.queuedRuns = 0;
    const session = new WorkerSession(worker, { createRequestId, createFingerprint }, deps, restored);
    if (restored.quarantined !== undefined) return session;
    const now = timestampFromDate(deps.now());
    for (const run of restored.unfinishedRuns) {
      run.status = RunStatus.INTERRUPTED;
      run.stopReason = StopReason.INTERRUPTED_BY_RESTART;
      run.pendingApproval = undefined;
      run.endedAt = now;
      await Promise.all([deps.store.putRun(session.workerId, run), session.emitRun(run)]);
    }
    if (wasBusy || restored.unfinishedRuns.length > 0) await session.saveAndEmitWorker();
    return session;
  }

  get workerId(): string {
    return this.worker.ref?.workerId ?? "";
  }

  /** The active run and the queue, for snapshots. */
  get activeRun(): Run | undefined {
    return this.active?.run;
  }

  /** Queued runs, oldest first. */
  get queuedRuns(): readonly Run[] {
    return this.queue;
  }

  /** The snapshot as of the last delivered event (see ObservedState). */
  snapshot() {
    return this.observed.snapshot();
  }


  /**
   * Accepts input under the busy policy and returns the run once it is
   * durably accepted. Single-flight: the state change happens before the
   * first await, so concurrent sends see each other.
   */
  async send(input: Input, policy: BusyPolicy, requestId: string): Promise<Run> {
    const fingerprint = inputFingerprint(input.text);
    if (requestId !== "") {
      const prior = this.requestIds.get(requestId);
      if (prior) {
        if (prior.fingerprint !== fingerprint) {
          throw new RuntimeError(
            Code.AlreadyExists,
            ErrorReason.IDEMPOTENCY_CONFLICT,
            `request_id "${requestId}" was already used with different input`,
            { request_id: requestId, run_id: prior.runId },
          );
        }
        return this.getRun(prior.runId);
      }
    }
    this.checkAcceptsInput();
    const run = create(RunSchema, {
      runId: this.deps.newRunId(),
      worker: this.worker.ref,
      input,
      status: RunStatus.QUEUED,
      usage: create(UsageSchema),
      createdAt: timestampFromDate(this.deps.now()),
      requestId,
    });
    const current = this.active?.run ?? this.pendingStart;
    if (current) {
      if (policy === BusyPolicy.ENQUEUE || policy === BusyPolicy.INTERRUPT) {
        if (this.queue.length >= this.deps.limits.maxQueueDepth) {
          throw new RuntimeError(
            Code.ResourceExhausted,
            ErrorReason.QUEUE_FULL,
            `worker ${this.workerId} already has ${this.queue.length} queued inputs`,
            { max_queue_depth: String(this.deps.limits.maxQueueDepth) },
          );
        }
      } else {
        throw new RuntimeError(
          Code.FailedPrecondition,
          ErrorReason.WORKER_BUSY,
          `worker ${this.workerId} is busy with run ${current.runId}`,
          { active_run_id: current.runId },
        );
      }
    }
    this.runCount++;
    if (requestId !== "") this.rememberRequestId(requestId, run.runId, fingerprint);
    // The record is written before its event: stores acknowledge an event only after the
    // worker's earlier writes, so no observer can see a run that a crash would lose.
    const stored = this.putRun(run);
    const accepted = this.emitRun(run);
    const snapshotOfAccepted = clone(RunSchema, run);
    if (!current) {
      // Reserve the slot now (single flight), start once the acceptance is durable.
      this.pendingStart = run;
      this.queue.push(run);
    } else {
      if (policy === BusyPolicy.INTERRUPT) this.queue.splice(this.interruptsAtHead++, 0, run);
      else this.queue.push(run);
      this.worker.queuedRuns = this.queue.length;
      void this.emitWorker().catch(() => {});
      if (policy === BusyPolicy.INTERRUPT) {
        const interrupted = current.runId;
        // Same path as CancelRun, so a run that ignores its signal is still ended after the grace period.
        void this.cancel(interrupted).catch((error: unknown) =>
          this.deps.logger.error("could not interrupt a run", { worker_id: this.workerId, run_id: interrupted, cause: String(error) }),
        );
      }
    }
    try {
      await Promise.all([accepted, stored]);
    } catch (error) {
      this.undoAccept(run, requestId);
      throw error;
    } finally {
      if (this.pendingStart === run) {
        this.pendingStart = undefined;
        if (!this.active) this.startNext();
      }
    }
    return snapshotOfAccepted;
  }

  /** The input was not durably accepted: the client is told so, so it must not run. */
  private undoAccept(run: Run, requestId: string): void {
    if (requestId !== "" && this.requestIds.get(requestId)?.runId === run.runId) this.requestIds.delete(requestId);
    const queuedAt = this.queue.indexOf(run);
    if (queuedAt >= 0) this.removeQueued(queuedAt);
  }

  private removeQueued(index: number): Run | undefined {
    const [run] = this.queue.splice(index, 1);
    if (index < this.interruptsAtHead) this.interruptsAtHead--;
    this.worker.queuedRuns = this.queue.length;
    return run;
  }

  /**
   * Cancels a queued or running run and returns it once it has ended (a run
   * that ignores its AbortSignal is ended by force after the grace period).
   * A finished run is returned as it is.
   */
  async cancel(runId: string, interrupted = false): Promise<Run> {
    const queuedAt = this.queue.findIndex((run) => run.runId === runId);
    if (queuedAt >= 0) {
      const run = this.removeQueued(queuedAt);
      if (run) {
        await this.endQueuedRun(run, interrupted);
        await this.saveAndEmitWorker();
        return clone(RunSchema, run);
      }
    }
    const active = this.active;
    if (active && active.run.runId === runId) {
      active.interrupted ||= interrupted;
      active.controller.abort();
      let timer: NodeJS.Timeout | undefined;
      const grace = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, this.deps.limits.cancelGraceMs);
      });
      await Promise.race([active.done, grace]);
      clearTimeout(timer);
      if (!active.closed) {
        this.deps.logger.warn("run ignored its AbortSignal; ended by force", { worker_id: this.workerId, run_id: runId });
        await this.finish(active, { kind: "cancelled" });
      }
      return clone(RunSchema, active.run);
    }
    return this.getRun(runId);
  }

  /** Approves or rejects the tool call a run is waiting on. */
  async resolveApproval(runId: string, toolCallId: string, decision: ApprovalDecision, reason: string): Promise<Run> {
    const active = this.active;
    if (!active || active.run.runId !== runId || !active.approval || active.approval.toolCallId !== toolCallId) {
      await this.getRun(runId);
      throw new RuntimeError(
        Code.FailedPrecondition,
        ErrorReason.APPROVAL_NOT_PENDING,
        `run ${runId} is not waiting for approval of tool call "${toolCallId}"`,
        { run_id: runId, tool_call_id: toolCallId },
      );
    }
    active.approval.resolve({ approved: decision === ApprovalDecision.APPROVE, reason });
    active.approval = undefined;
    active.run.status = RunStatus.RUNNING;
    active.run.pendingApproval = undefined;
    void this.emitRun(active.run).catch(() => {});
    return clone(RunSchema, active.run);
  }

  /** Stops the worker: no more input, queued and active runs cancelled. Idempotent. */
  stop(): Promise<void> {
    if (this.stopping) return this.stopping;
    if (this.worker.status === WorkerStatus.STOPPED || this.worker.status === WorkerStatus.FAILED) return Promise.resolve();
    this.worker.status = WorkerStatus.STOPPED;
    // Concurrent callers (a second StopWorker, DeleteWorker) wait for the same stop.
    this.stopping = (async () => {
      await this.cancelEverything(false);
      await this.saveAndEmitWorker();
    })();
    return this.stopping;
  }

  private putRun(run: Run): Promise<void> {
    if (this.deleted) return Promise.resolve();
    return this.reported("runs", this.deps.store.putRun(this.workerId, clone(RunSchema, run)));
  }

  /** Reports a direct store write's outcome for runtime health, passing it on. */
  private reported<T>(path: string, write: Promise<T>): Promise<T> {
    const source = `worker:${this.workerId}:${path}`;
    return write.then(
      (value) => {
        this.deps.onStoreResult(source, undefined);
        return value;
      },
      (error: unknown) => {
        this.deps.onStoreResult(source, error);
        throw error;
      },
    );
  }

  /**
   * Quarantines the worker: its stored state is damaged, so it becomes
   * FAILED with the reason, its runs end and it takes no more input. The
   * snapshot write may still succeed (stores allow it) so the state survives.
   */
  async quarantine(message: string): Promise<void> {
    if (this.worker.status === WorkerStatus.FAILED) return;
    this.worker.status = WorkerStatus.FAILED;
    this.worker.failureMessage = message;
    await this.cancelEverything(false).catch(() => {});
    await this.saveAndEmitWorker().catch(() => {});
  }

  /** Marks the worker deleted: later writes for it are skipped. */
  markDeleted(): void {
    this.deleted = true;
  }

  /** Interrupts every run for shutdown; the worker stays usable after restart. */
  async interruptAll(): Promise<void> {
    await this.cancelEverything(true);
  }

  /** Returns a run from memory or the store. */
  async getRun(runId: string): Promise<Run> {
    if (this.active?.run.runId === runId) return clone(RunSchema, this.active.run);
    const queued = this.queue.find((run) => run.runId === runId);
    if (queued) return clone(RunSchema, queued);
    const stored = await this.deps.store.getRun(this.workerId, runId);
    if (!stored) throw notFound("run_id", runId);
    return stored;
  }

  private async cancelEverything(interrupted: boolean): Promise<void> {
    const queued = this.queue.splice(0);
    this.interruptsAtHead = 0;
    for (const run of queued) await this.endQueuedRun(run, interrupted);
    if (this.active) await this.cancel(this.active.run.runId, interrupted);
  }

  private async endQueuedRun(run: Run, interrupted: boolean): Promise<void> {
    run.status = interrupted ? RunStatus.INTERRUPTED : RunStatus.CANCELLED;
    run.stopReason = interrupted ? StopReason.INTERRUPTED_BY_RESTART : StopReason.CANCELLED;
    run.endedAt = timestampFromDate(this.deps.now());
    this.worker.queuedRuns = this.queue.length;
    await Promise.all([this.putRun(run), this.emitRun(run)]);
  }

  private checkAcceptsInput(): void {
    this.deps.checkAcceptingWork();
    if (this.worker.status === WorkerStatus.FAILED) {
      throw new RuntimeError(
        Code.FailedPrecondition,
        ErrorReason.WORKER_FAILED,
        `worker ${this.workerId} has failed: ${this.worker.failureMessage}`,
      );
    }
    if (this.worker.status === WorkerStatus.STOPPED) {
      throw new RuntimeError(Code.FailedPrecondition, ErrorReason.WORKER_STOPPED, `worker ${this.workerId} is stopped`);
    }
    const connectivity = this.worker.connectivity;
    if (!this.deps.backend || connectivity?.state !== ConnectivityState.CONNECTED) {
      const reason = connectivity?.reason || "no execution backend is connected";
      throw new RuntimeError(
        Code.FailedPrecondition,
        ErrorReason.WORKER_NOT_CONNECTED,
        `worker ${this.workerId} cannot run input: ${reason}`,
        { reason },
      );
    }
  }

  /** Starts the next queued run, or goes idle. Synchronous up to execute(). */
  private startNext(): void {
    const run = this.queue.shift();
    if (run && this.interruptsAtHead > 0) this.interruptsAtHead--;
    this.worker.queuedRuns = this.queue.length;
    if (!run || this.worker.status === WorkerStatus.STOPPED) {
      this.worker.activeRunId = "";
      if (this.worker.status === WorkerStatus.RUNNING) this.worker.status = WorkerStatus.IDLE;
      void this.saveAndEmitWorker().catch(() => {});
      return;
    }
    run.status = RunStatus.RUNNING;
    run.startedAt = timestampFromDate(this.deps.now());
    this.worker.status = WorkerStatus.RUNNING;
    this.worker.activeRunId = run.runId;
    const active: ActiveRun = {
      run,
      controller: new AbortController(),
      closed: false,
      interrupted: false,
      done: Promise.resolve(),
    };
    this.active = active;
    void this.putRun(run).catch(() => {});
    void this.emitRun(run).catch(() => {});
    void this.saveAndEmitWorker().catch(() => {});
    active.done = this.execute(active);
  }

  private async execute(active: ActiveRun): Promise<void> {
    const { run, controller } = active;
    const sink = this.sinkFor(active);
    let outcome: RunOutcome;
    try {
      await sink.commit({ case: "userMessage", value: { $typeName: "worker_runtime.v1.UserMessage", text: run.input?.text ?? "" } });
      const backend = this.deps.backend;
      if (!backend) throw new RuntimeError(Code.FailedPrecondition, ErrorReason.WORKER_NOT_CONNECTED, "no execution backend");
      if (controller.signal.aborted) throw abortError();
      const workspaceDir = this.deps.workspaceDirOf(this.worker);
      outcome = await backend.execute(
        {
          worker: clone(WorkerSchema, this.worker),
          profile: this.deps.profileOf(this.worker),
          run: clone(RunSchema, run),
          capabilities: [...this.worker.capabilities],
          readTranscript: (beforeSeq, limit) =>
            this.deps.store.readTranscript(
              this.workerId,
              { kind: "before", beforeSeq: beforeSeq ?? this.events.lastTranscriptSeq + 1n },
              Math.min(limit, this.deps.limits.maxTranscriptRead),
            ),
          ...(workspaceDir !== undefined ? { workspaceDir } : {}),
        },
        sink,
        controller.signal,
      );
    } catch (error) {
      if (controller.signal.aborted) {
        outcome = { kind: "cancelled" };
      } else if (error instanceof RuntimeError) {
        outcome = { kind: "failed", reason: error.reason, message: error.message };
      } else if (error instanceof StoreWriteError || error instanceof StoreSequenceError) {
        outcome = { kind: "failed", reason: ErrorReason.STORE_UNAVAILABLE, message: "the runtime could not persist the run" };
      } else {
        this.deps.logger.error("execution backend threw", { worker_id: this.workerId, run_id: run.runId, cause: String(error) });
        outcome = { kind: "failed", reason: ErrorReason.INTERNAL, message: "the execution backend failed unexpectedly" };
      }
    }
    if (controller.signal.aborted && outcome.kind !== "completed") outcome = { kind: "cancelled" };
    await this.finish(active, outcome);
  }

  /** Ends the active run with its outcome and starts the next one. */
  private async finish(active: ActiveRun, outcome: RunOutcome): Promise<void> {
    if (active.closed) return;
    active.closed = true;
    const { run } = active;
    const now = timestampFromDate(this.deps.now());
    run.pendingApproval = undefined;
    run.endedAt = now;
    switch (outcome.kind) {
      case "completed":
        run.status = RunStatus.COMPLETED;
        run.stopReason = outcome.stopReason;
        break;
      case "cancelled":
        run.status = active.interrupted ? RunStatus.INTERRUPTED : RunStatus.CANCELLED;
        run.stopReason = active.interrupted ? StopReason.INTERRUPTED_BY_RESTART : StopReason.CANCELLED;
        break;
      case "failed":
        run.status = RunStatus.FAILED;
        run.stopReason = StopReason.ERROR;
        run.error = create(RunErrorSchema, { reason: outcome.reason, message: outcome.message, metadata: outcome.metadata ?? {} });
        break;
    }
    addUsage(this.worker.usage ?? (this.worker.usage = create(UsageSchema)), run.usage);
    const writes: Promise<unknown>[] = [];
    if (outcome.kind === "failed") {
      writes.push(this.commitEntry(run.runId, { case: "notice", value: { $typeName: "worker_runtime.v1.Notice", code: "run.failed", message: outcome.message } }));
    }
    writes.push(this.putRun(run), this.emitRun(run));
    if (this.active === active) this.active = undefined;
    this.startNext();
    await Promise.all(writes).catch((error: unknown) => {
      this.deps.logger.error("could not persist the end of a run", { worker_id: this.workerId, run_id: run.runId, cause: String(error) });
    });
  }

  private sinkFor(active: ActiveRun): RunSink {
    const { run } = active;
    const open = (): void => {
      if (active.closed) throw new RunClosedError(`run ${run.runId} has ended`);
    };
    const live = (kind: WorkerEvent["kind"]): void => {
      open();
      this.events.emitLive(create(WorkerEventSchema, { kind }));
    };
    return {
      textDelta: (blockId, text) =>
        live({ case: "textDelta", value: { $typeName: "worker_runtime.v1.TextDelta", runId: run.runId, blockId, text } }),
      reasoningDelta: (blockId, text) =>
        live({ case: "reasoningDelta", value: { $typeName: "worker_runtime.v1.ReasoningDelta", runId: run.runId, blockId, text } }),
      toolCallDelta: (blockId, delta) =>
        live({
          case: "toolCallDelta",
          value: {
            $typeName: "worker_runtime.v1.ToolCallDelta",
            runId: run.runId,
            blockId,
            toolCallId: delta.toolCallId ?? "",
            toolName: delta.toolName ?? "",
            argumentsDelta: delta.argumentsDelta ?? "",
          },
        }),
      discardBlock: (blockId) =>
        live({ case: "blockDiscarded", value: { $typeName: "worker_runtime.v1.InFlightBlockDiscarded", runId: run.runId, blockId } }),
      commit: async (content, blockId) => {
        open();
        return this.commitEntry(run.runId, content, blockId);
      },
      addUsage: (usage) => {
        open();
        addUsage(run.usage ?? (run.usage = create(UsageSchema)), create(UsageSchema, usage));
      },
      turn: () => {
        open();
        run.turns++;
        (run.usage ?? (run.usage = create(UsageSchema))).modelRequests++;
      },
      requestApproval: (call, signal) => this.awaitApproval(active, call, signal),
      retry: (init) => {
        open();
        const retry = create(ProviderRetrySchema, { ...init, time: timestampFromDate(this.deps.now()) });
        run.retries++;
        run.lastRetry = retry;
        live({ case: "retryScheduled", value: { $typeName: "worker_runtime.v1.RetryScheduled", runId: run.runId, retry } });
      },
    };
  }

  private async awaitApproval(active: ActiveRun, call: PendingToolCall, signal: AbortSignal): Promise<ApprovalResult> {
    if (active.closed) throw new RunClosedError(`run ${active.run.runId} has ended`);
    const signals = [signal, active.controller.signal];
    if (signals.some((s) => s.aborted)) throw abortError();
    const { run } = active;
    // Listen before the first await: an abort during the write below must not be missed.
    const decision = new Promise<ApprovalResult>((resolve, reject) => {
      const onAbort = (): void => {
        active.approval = undefined;
        for (const s of signals) s.removeEventListener("abort", onAbort);
        reject(abortError());
      };
      for (const s of signals) s.addEventListener("abort", onAbort, { once: true });
      active.approval = {
        toolCallId: call.toolCallId,
        resolve: (result) => {
          for (const s of signals) s.removeEventListener("abort", onAbort);
          resolve(result);
        },
      };
    });
    run.status = RunStatus.AWAITING_APPROVAL;
    run.pendingApproval = create(PendingApprovalSchema, { ...call, requestedAt: timestampFromDate(this.deps.now()) });
    await this.emitRun(run).catch((error: unknown) => {
      active.approval = undefined;
      throw error;
    });
    return decision;
  }

  private async commitEntry(runId: string, content: TranscriptEntry["content"], blockId = ""): Promise<TranscriptEntry> {
    const now = timestampFromDate(this.deps.now());
    const { entry } = await this.events.emitWithTranscript(
      (seq) => create(TranscriptEntrySchema, { seq, runId, createdAt: now, blockId, content }),
      (entry, seq, cursor) =>
        create(WorkerEventSchema, { seq, cursor, time: now, kind: { case: "transcriptAppended", value: entry } }),
    );
    return entry;
  }

  private emitRun(run: Run): Promise<unknown> {
    if (this.deleted) return Promise.resolve();
    const copy = clone(RunSchema, run);
    this.deps.publishRun(copy);
    return this.events.emitDurable((seq, cursor) =>
      create(WorkerEventSchema, { seq, cursor, time: timestampFromDate(this.deps.now()), kind: { case: "runChanged", value: copy } }),
    );
  }

  private emitWorker(): Promise<unknown> {
    if (this.deleted) return Promise.resolve();
    this.worker.updatedAt = timestampFromDate(this.deps.now());
    const copy = clone(WorkerSchema, this.worker);
    this.deps.publishWorker(copy);
    return this.events.emitDurable((seq, cursor) => {
      copy.lastEventSeq = seq;
      return create(WorkerEventSchema, { seq, cursor, time: copy.updatedAt, kind: { case: "workerChanged", value: copy } });
    });
  }

  /** Persists the worker snapshot and announces the change. */
  async saveAndEmitWorker(): Promise<void> {
    if (this.deleted) return;
    const saved = this.reported("snapshot", this.deps.store.putWorker({ worker: clone(WorkerSchema, this.worker), ...this.record }));
    await Promise.all([saved, this.emitWorker()]);
  }

  private rememberRequestId(requestId: string, runId: string, fingerprint: string): void {
    this.requestIds.delete(requestId);
    this.requestIds.set(requestId, { runId, fingerprint });
    if (this.requestIds.size > this.deps.limits.requestIdMemory) {
      const oldest = this.requestIds.keys().next().value;
      if (oldest !== undefined) this.requestIds.delete(oldest);
    }
  }
}

/** Adds `from` into `into`, field by field. */
function addUsage(into: Usage, from: Usage | undefined): void {
  if (!from) return;
  into.inputTokens += from.inputTokens;
  into.outputTokens += from.outputTokens;
  into.cachedInputTokens += from.cachedInputTokens;
  into.reasoningTokens += from.reasoningTokens;
  into.modelRequests += from.modelRequests;
}

