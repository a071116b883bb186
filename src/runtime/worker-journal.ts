import { create } from "@bufbuild/protobuf";
import { cloneMessage } from "./message-clone.js";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { WorkerEventSchema, type WorkerEvent } from "../../gen/worker_runtime/v1/events_pb.js";
import { RunSchema, type Run } from "../../gen/worker_runtime/v1/run_pb.js";
import { TranscriptEntrySchema, type TranscriptEntry } from "../../gen/worker_runtime/v1/transcript_pb.js";
import { WorkerSchema, WorkerStatus, type Worker } from "../../gen/worker_runtime/v1/worker_pb.js";
import { sealPayload } from "./durable-event-encoding.js";
import { encodeWorkerEvent } from "./event-encoding.js";
import { requestFingerprint } from "./fingerprint.js";
import { DurableEventStream } from "./event-stream.js";
import { timedAppend } from "./metrics.js";
import { subscriberBacklog } from "./limits.js";
import { activeRunStateOf } from "./run-slot.js";
import type { SessionDeps } from "./session-deps.js";
import type { RestoredWorker, StoredEvent, WorkerRecord } from "./store.js";
import type { StreamItem } from "./subscription.js";
import { OwedChanges } from "./owed-changes.js";
import { type InterruptedBy, interruptedNotice, tellsInterruption } from "./interrupted-notice.js";
import { eventsNotPersisted } from "./store-errors.js";
import type { UnsavedRuns } from "./unsaved-runs.js";

/**
 * Everything a worker writes: run records, worker snapshots, transcript
 * entries and the events announcing them. Two rules live here. A record is
 * written before its event: stores acknowledge an event only after the
 * worker's earlier writes, so no observer can see a run a crash would lose.
 * And every write's outcome is reported to runtime health per write path.
 * What the store failed to take is owed and written again once it writes
 * (see {@link catchUp}). Once the worker is deleted, nothing more is written.
 */
export class WorkerJournal {
  /** The worker's ordered event stream, continuing from what the store restored. */
  readonly events: DurableEventStream<WorkerEvent>;
  /** What failed writes left unwritten or unannounced (see owed-changes.ts). */
  private readonly owed = new OwedChanges();
  private deleted = false;
  private catchingUp = false;

  constructor(
    private readonly worker: Worker,
    private readonly record: Omit<WorkerRecord, "worker">,
    private readonly deps: SessionDeps,
    restored: RestoredWorker | undefined,
    onDeliver: (item: StreamItem<WorkerEvent>, event: WorkerEvent) => void,
  ) {
    const workerId = this.workerId;
    this.events = new DurableEventStream<WorkerEvent>({
      stream: deps.cursorStreamOf(workerId),
      lastSeq: restored?.lastEventSeq ?? 0n,
      lastTranscriptSeq: restored?.lastTranscriptSeq ?? 0n,
      encode: encodeWorkerEvent,
      persistTranscript: timedAppend(deps.metrics, "transcript", (transcript: TranscriptEntry[]) =>
        deps.store.appendTranscript(workerId, transcript),
      ),
      persistEvents: timedAppend(deps.metrics, "worker_events", (events: StoredEvent[]) => deps.store.appendEvents(workerId, events)),
      onPersistResult: (error) => deps.onStoreResult(`worker:${workerId}:events`, error),
      onDeliver,
      // A new watch must not wait on what was lost: the owed writes are tried now, and failing end it.
      catchUp: () => this.catchUp(),
      subscriberBacklog: subscriberBacklog(deps.limits),
    });
  }

  /**
   * Run versions the store does not have yet: failed writes (see
   * unsaved-runs.ts) and interrupted runs waiting for their notice. Reads
   * answer from here.
   */
  get unsaved(): Pick<UnsavedRuns, "get"> {
    return { get: (runId) => this.owed.withheldRuns.get(runId) ?? this.owed.unsavedRuns.get(runId) };
  }

  private get workerId(): string {
    return this.worker.ref?.workerId ?? "";
  }

  /** Skips every later write: the worker is deleted (false: its delete failed in the store, and it stays). */
  markDeleted(deleted: boolean): void {
    this.deleted = deleted;
  }

  /**
   * Writes a run's record, then its runChanged event; settles when both are
   * durable. One copy of the run serves the store, the reads after a failed
   * write and both events (here and runtime-wide): none of them changes it,
   * so it is also encoded only once (durable-event-encoding.ts). A run's
   * `acceptance` that fails is not owed: its sender is told, and it never ran.
   * A run a shutdown interrupted tells so in the transcript first (see
   * {@link recordInterrupted}).
   */
  async recordRun(run: Run, acceptance = false): Promise<void> {
    if (this.deleted) return;
    if (tellsInterruption(run)) return this.recordInterrupted(run, "shutdown");
    const copy = sealPayload(RunSchema, cloneMessage(RunSchema, run));
    await Promise.all([this.putRun(copy, !acceptance), this.emitRun(copy, !acceptance)]);
  }

  /**
   * Records a run the runtime's stop interrupted (`by` a restart, or a
   * shutdown's drain). One that started commits its `run.interrupted`
   * notice (interrupted-notice.ts) first, unless `noticeWritten` (a restart
   * found it already in the transcript), and its record is written only
   * once the notice is durable: a run stored ended always has its notice,
   * and one stored unfinished is checked for it at the next start, so
   * however often the runtime stops there is one notice. The run's event
   * follows the notice's on the worker's stream (same order, one rollback).
   * A notice that cannot be written holds the record back (reads answer
   * from the held version) until {@link catchUp} writes both.
   */
  async recordInterrupted(run: Run, by: InterruptedBy, noticeWritten = false): Promise<void> {
    if (this.deleted) return;
    const copy = sealPayload(RunSchema, cloneMessage(RunSchema, run));
    if (noticeWritten || !tellsInterruption(copy)) {
      await Promise.all([this.putRun(copy), this.emitRun(copy, true)]);
      return;
    }
    await Promise.all([this.noticeThenRecord(copy, by), this.emitRun(copy, true)]);
  }

  /** Commits an interrupted run's notice, then writes its record (see {@link recordInterrupted}). */
  private noticeThenRecord(copy: Run, by: InterruptedBy): Promise<void> {
    const withheld = this.owed.withheldRuns;
    withheld.hold(copy, by);
    return this.commitEntry(copy.runId, { case: "notice", value: interruptedNotice(by) }).then(
      () => {
        // Issued before it is released, so reads go from the held version to the store's without a gap.
        const recorded = this.putRun(copy);
        withheld.release(copy.runId);
        return recorded;
      },
      (error: unknown) => {
        withheld.failed(copy.runId);
        throw error;
      },
    );
  }

  /**
   * Writes a run's record without announcing it, in the background: what
   * the provider has counted so far (usage, turns), so that a crash mid-run
   * does not lose tokens already spent. Watchers hear of usage when the run
   * changes state or ends, as before.
   */
  saveRunProgress(run: Run): void {
    if (this.deleted) return;
    this.deps.background.start(this.putRun(cloneMessage(RunSchema, run)));
  }

  /**
   * Writes a run's record (a copy nothing changes) with the request fingerprint the store keeps for
   * idempotency; a failure is owed (see {@link catchUp}) unless `owed` is false.
   */
  private putRun(copy: Run, owed = true): Promise<void> {
    const fingerprint = requestFingerprint(copy);
    const write = this.reported("runs", this.deps.store.putRun(this.workerId, copy, { fingerprint }));
    return owed ? this.owed.unsavedRuns.track(copy, write) : write;
  }

  /** Announces a run change (a copy nothing changes), here and on the runtime-wide stream. */
  private emitRun(copy: Run, owed: boolean): Promise<unknown> {
    this.deps.publishRun(copy);
    return this.announceRun(copy, owed);
  }

  /** Announces a run change on the worker's stream only (a run end owed is not counted or published twice). */
  private announceRun(copy: Run, owed = true): Promise<unknown> {
    const time = timestampFromDate(this.deps.now());
    const event = this.emit((seq, cursor) => create(WorkerEventSchema, { seq, cursor, time, kind: { case: "runChanged", value: copy } }));
    return owed ? this.owed.unannouncedRuns.track(copy, event) : event;
  }

  /**
   * Announces a worker change (queue depth, usage) without writing its snapshot; "created" keeps
   * it off the runtime-wide stream, where the catalog announces a new worker with workerCreated.
   */
  emitWorker(announce: "announce" | "created" = "announce"): Promise<unknown> {
    if (this.deleted) return Promise.resolve();
    return this.announceWorker(this.workerCopy(), announce);
  }

  /**
   * Writes the worker snapshot and announces the change. One copy serves the
   * store and both events: nothing changes it after it is made (the worker's
   * event carries it with its own seq as a shallow copy).
   */
  async saveWorker(): Promise<void> {
    if (this.deleted) return;
    const copy = this.workerCopy();
    const saved = this.owed.snapshot.track(this.reported("snapshot", this.deps.store.putWorker({ worker: copy, ...this.record })));
    await Promise.all([saved, this.announceWorker(copy, "announce")]);
  }

  /**
   * Follows the active run into and out of AWAITING_APPROVAL: when `run` is
   * the worker's active run and its state (run-slot.ts) changed, the
   * worker takes it and its snapshot is written and announced (in the
   * background: the caller has its own write to wait for). Call it after
   * the run's own record is issued, so watchers see the run change first.
   * Starting and ending runs set the state with the id (setActiveRun).
   */
  activeRunChanged(run: Run): void {
    const state = activeRunStateOf(run);
    if (this.deleted || run.runId !== this.worker.activeRunId || state === this.worker.activeRunState) return;
    this.worker.activeRunState = state;
    this.deps.background.start(this.saveWorker());
  }

  /** The worker as of now, stamped updated now: a copy nobody changes. */
  private workerCopy(): Worker {
    this.worker.updatedAt = timestampFromDate(this.deps.now());
    return cloneMessage(WorkerSchema, this.worker);
  }

  private announceWorker(copy: Worker, announce: "announce" | "created"): Promise<unknown> {
    // A new worker is announced runtime-wide by the catalog's workerCreated, which must come first.
    if (announce === "announce") this.deps.publishWorker(copy);
    const event = this.emit((seq, cursor) => {
      const value: Worker = { ...copy, lastEventSeq: seq === 0n ? this.events.lastDeliveredSeq : seq };
      return create(WorkerEventSchema, { seq, cursor, time: copy.updatedAt, kind: { case: "workerChanged", value } });
    });
    return this.owed.workerAnnouncement.track(event);
  }

  /**
   * Writes and announces again what failed writes left owed (owed-changes.ts):
   * interrupted runs' notices and then their records, the run versions the
   * store lacks, the run changes and the worker's snapshot its watchers
   * never heard of. Called when the store writes again
   * (runtime health's probe), when a watch opens, and before each new event
   * (so the owed ones keep their order ahead of it). A write that fails
   * again stays owed. Nothing is owed by a FAILED (quarantined) worker,
   * whose logs take no more writes, nor by one being deleted.
   */
  catchUp(): void {
    if (this.catchingUp || this.deleted || this.events.endingWith || this.worker.status === WorkerStatus.FAILED || !this.owed.any) return;
    this.catchingUp = true;
    try {
      // A held run's notice first: it goes ahead of the run's own owed announcement on the stream.
      for (const { run, by } of this.owed.withheldRuns.retryable()) this.deps.background.start(this.noticeThenRecord(run, by));
      for (const run of this.owed.unsavedRuns.retryable()) this.deps.background.start(this.putRun(run));
      for (const run of this.owed.unannouncedRuns.retryable()) this.deps.background.start(this.announceRun(run));
      if (this.owed.worker) this.deps.background.start(this.saveWorker());
    } finally {
      this.catchingUp = false;
    }
  }

  /**
   * Emits a durable event. A FAILED worker is quarantined (its stored state
   * is damaged; nothing else makes a worker FAILED) and its logs take no
   * more writes, so a worker or run change that cannot be written is
   * delivered live instead (seq 0, no cursor). Without that, a watch open
   * when the worker failed never heard of it, and later snapshots (cut from
   * what was delivered) still showed it IDLE while GetWorker said FAILED. A
   * watch resumed by cursor does not replay such a change; its snapshot
   * shows it.
   *
   * Any other worker's event that cannot be written ends every watch of it
   * (and StreamInput) with STORE_UNAVAILABLE: a live copy would break "an
   * event acknowledged to any observer is durable", and silence left them
   * waiting for ever on a run whose end was lost. The change is owed and
   * announced once the store writes (see {@link catchUp}), which a watch
   * resumed from its last cursor gets, once.
   */
  private emit(build: (seq: bigint, cursor: string) => WorkerEvent): Promise<unknown> {
    this.catchUp();
    return this.events.emitDurable(build).catch((error: unknown) => {
      // Checked as the write fails: a worker quarantined meanwhile failed it by its damaged log.
      if (this.worker.status === WorkerStatus.FAILED) this.events.emitLive(build(0n, ""));
      else this.events.closeAll(eventsNotPersisted({ worker_id: this.workerId }, error));
      throw error;
    });
  }

  /** Appends a transcript entry with its transcriptAppended event. */
  async commitEntry(runId: string, content: TranscriptEntry["content"], blockId = ""): Promise<TranscriptEntry> {
    const now = timestampFromDate(this.deps.now());
    const { entry } = await this.events.emitWithTranscript(
      (seq) => create(TranscriptEntrySchema, { seq, runId, createdAt: now, blockId, content }),
      (entry, seq, cursor) => create(WorkerEventSchema, { seq, cursor, time: now, kind: { case: "transcriptAppended", value: entry } }),
    );
    return entry;
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
}
