import type { ConfigBundle } from "../../gen/worker_runtime/v1/profile_pb.js";
import type { Run } from "../../gen/worker_runtime/v1/run_pb.js";
import type { TranscriptEntry } from "../../gen/worker_runtime/v1/transcript_pb.js";
import type { Worker } from "../../gen/worker_runtime/v1/worker_pb.js";
import type { DiagnosticSeverity } from "../../gen/worker_runtime/v1/runtime_pb.js";

/**
 * The persistence seam of the Runtime. The memory store (embedded use, tests)
 * and the file store (standalone server) implement it with the same
 * semantics, so the core never knows which one it has.
 *
 * Contract for every implementation:
 * - Calls that touch the same log are applied in call order.
 * - `appendEvents`/`appendTranscript`/`appendRuntimeEvents` resolve only once
 *   the records are durable (for the file store: fsynced; group commit is
 *   encouraged). The core delivers an event to observers only after that.
 * - Appends are gap-free: the first record's seq must be the log's last seq + 1
 *   and the rest must follow it, otherwise the append rejects with
 *   `StoreSequenceError` and nothing of the batch is applied. This is how the
 *   core recovers cleanly after a failed write: it rolls its counter back and
 *   any append issued after the failed one is refused instead of leaving a gap.
 * - Failures (disk full, I/O error) reject with `StoreWriteError`; the store
 *   must stay usable and accept later writes once the cause goes away. A
 *   write for a worker that does not exist (never created, or deleted) is such
 *   a failure too.
 *
 * test/support/store-contract.ts checks this contract; every implementation
 * runs it (test/store/store-contract.test.ts).
 */
export interface RuntimeStore {
  /** "memory" or "fs"; shown in the runtime summary. */
  readonly kind: StoreKindName;

  /**
   * Opens the store and returns everything the Runtime needs to serve.
   * `runtimeId` is the configured id, if any; a store that has persisted a
   * different id must reject with `StoreConflictError`.
   */
  open(init: StoreOpenInit): Promise<OpenedStore>;

  /** Replaces the worker snapshot atomically. */
  putWorker(record: WorkerRecord): Promise<void>;
  /** Removes a worker and all of its logs. */
  deleteWorker(workerId: string): Promise<void>;

  /**
   * Inserts or replaces a run (latest state wins), durable on resolve. Reads
   * (`getRun`, `listRuns`) see the new version from the call on, before it
   * is durable: the runtime shows a run's end at once, so a read after it
   * must too. A failed write leaves the previous version. `init.fingerprint`
   * is what a durable store hands back with the run's request id at open
   * ({@link RestoredWorker.recentRequestIds}); the core computes it, so its
   * idempotency rule lives in one place and the store never re-derives it.
   */
  putRun(workerId: string, run: Run, init: PutRunInit): Promise<void>;
  /** Reads one run. */
  getRun(workerId: string, runId: string): Promise<Run | undefined>;
  /**
   * Lists runs newest first. `beforeOrdinal` pages backwards (exclusive);
   * undefined starts at the newest. Returns at most `limit` runs, each with
   * its ordinal (1-based creation order within the worker).
   */
  listRuns(workerId: string, beforeOrdinal: number | undefined, limit: number): Promise<StoredRun[]>;

  /** Appends committed transcript entries (seq gap-free), durable on resolve. */
  appendTranscript(workerId: string, entries: TranscriptEntry[]): Promise<void>;
  /**
   * Reads transcript entries, oldest first: seq > afterSeq ascending, or the
   * `limit` entries just before `beforeSeq`. Cost must be O(limit).
   */
  readTranscript(workerId: string, range: TranscriptRange, limit: number): Promise<TranscriptEntry[]>;

  /** Appends encoded worker events (seq gap-free), durable on resolve. */
  appendEvents(workerId: string, events: StoredEvent[]): Promise<void>;
  /** Reads encoded worker events with seq > afterSeq, ascending, at most limit. */
  readEvents(workerId: string, afterSeq: bigint, limit: number): Promise<StoredEvent[]>;
  /** Oldest worker event seq still retained (lastSeq + 1 when none retained). */
  earliestEventSeq(workerId: string): bigint;

  /** Appends encoded runtime-wide events (seq gap-free), durable on resolve. */
  appendRuntimeEvents(events: StoredEvent[]): Promise<void>;
  /** Reads encoded runtime events with seq > afterSeq, ascending, at most limit. */
  readRuntimeEvents(afterSeq: bigint, limit: number): Promise<StoredEvent[]>;
  /** Oldest runtime event seq still retained (lastSeq + 1 when none retained). */
  earliestRuntimeEventSeq(): bigint;

  /**
   * Stores a config bundle (canonical, verified by the core) durably, before
   * it resolves; `open` returns it from then on. Bundles are immutable: the
   * core never puts one id twice with different content.
   */
  putConfigBundle(bundle: ConfigBundle): Promise<void>;
  /**
   * Writes and syncs a scratch record and removes it, to learn whether the
   * store can write again after a failure (optional; a store without it is
   * only known to have recovered when its failed paths write again).
   */
  probeWrite?(): Promise<void>;

  /** Flushes pending writes and releases files. */
  close(): Promise<void>;
}

/** Name of a store implementation. */
export type StoreKindName = "memory" | "fs";

/** Options for {@link RuntimeStore.open}. */
export interface StoreOpenInit {
  /** The configured runtime id, if any. */
  runtimeId?: string;
  /** Used when the store has no persisted id and none is configured. */
  generateRuntimeId: () => string;
  /**
   * The runtime's event retention (`Limits.eventRetention` and
   * `eventRetentionBytes`), so that the limits are the one place it is set:
   * a store keeps this much of each event log unless it was created with
   * its own retention options, which win.
   */
  eventRetention?: { events: number; bytes: number };
}

/** What a store holds when it opens. */
export interface OpenedStore {
  /** The runtime id (persisted on first open by durable stores). */
  runtimeId: string;
  /** Every worker, in creation order. */
  workers: RestoredWorker[];
  /**
   * The identity of this store's data: random, fixed for its life (a durable
   * store persists it; a replaced data dir has a new one), never shown to
   * clients. Cursors are bound to it and page tokens sealed with it, so
   * neither outlives the data it points into. Empty for stores that have
   * none (data written before it existed); the Runtime then binds cursors to
   * runtime and worker only and seals page tokens with a per-process secret.
   */
  storeId?: string;
  /** Seq of the last runtime-wide event (0n when none). */
  lastRuntimeEventSeq: bigint;
  /** Every stored config bundle (a store that keeps none may leave it out). */
  configBundles?: ConfigBundle[];
  /** Stored config bundles that could not be read back (the core reports them and keeps their workers from running). */
  damagedConfigBundles?: DamagedConfigBundle[];
  /** Problems found while opening (torn tails repaired, workers quarantined...). */
  diagnostics: StoreDiagnostic[];
}

/** A stored config bundle a store could not read back (OpenedStore.damagedConfigBundles). */
export interface DamagedConfigBundle {
  /** The id it is stored under (e.g. its file's name). */
  bundleId: string;
  /** What is wrong, in words naming no host path beyond the store's own layout. */
  problem: string;
}

/** A worker as restored from the store. */
export interface RestoredWorker {
  record: WorkerRecord;
  /** Seq of the last durable worker event (0n when none). */
  lastEventSeq: bigint;
  /** Seq of the last transcript entry (0n when none). */
  lastTranscriptSeq: bigint;
  /** Number of runs stored (the next run's ordinal is runCount + 1). */
  runCount: number;
  /** Runs that were QUEUED, RUNNING or AWAITING_APPROVAL when the store closed. */
  unfinishedRuns: Run[];
  /**
   * Recent SendInput request ids → run ids, newest last (up to ~1024), for
   * idempotency across restarts. `fingerprint` is the one the core passed to
   * {@link RuntimeStore.putRun} with the run's latest version.
   */
  recentRequestIds: Array<{ requestId: string; runId: string; fingerprint: string }>;
  /**
   * Set when the worker's stored state is unusable: what is damaged, files
   * named relative to the data dir (a diagnostic's text). The Runtime serves
   * the worker as FAILED, refuses input to it, and tells its users in plain
   * words (`DAMAGED_WORKER_MESSAGE`, store-errors.ts), never this. The
   * store reports the damage itself, among the open's diagnostics.
   */
  quarantined?: string;
  /**
   * Set when the open found damage that cut the worker's transcript short
   * (the worker is then quarantined): the last seq that can be read
   * (`lastTranscriptSeq`); the entries committed after it cannot be.
   * ReadTranscript says so on every slice (`cut`, transcript-cut.ts).
   */
  transcriptCut?: bigint;
}

/** The durable snapshot of one worker. */
export interface WorkerRecord {
  /** The worker as last saved. */
  worker: Worker;
  /** Idempotency of CreateWorker: the request id and a fingerprint of its content. */
  createRequestId: string;
  createFingerprint: string;
}

/** What the core passes along with a run to {@link RuntimeStore.putRun}. */
export interface PutRunInit {
  /**
   * The core's fingerprint of the run's request (`requestFingerprint` in
   * fingerprint.ts); empty when the run has no request id. Stored verbatim.
   */
  fingerprint: string;
}

/** A run with its creation ordinal within its worker. */
export interface StoredRun {
  ordinal: number;
  run: Run;
}

/** One encoded event: its seq and the protobuf bytes of the whole event. */
export interface StoredEvent {
  seq: bigint;
  bytes: Uint8Array;
}

/** A range of transcript to read. */
export type TranscriptRange = { kind: "after"; afterSeq: bigint } | { kind: "before"; beforeSeq: bigint };

/** A problem a store found, reported as a Diagnostic by the Runtime. */
export interface StoreDiagnostic {
  severity: DiagnosticSeverity;
  code: string;
  message: string;
  workerId?: string;
  /**
   * What `message` says with absolute file paths and the underlying errors:
   * for the operator's log only (the Runtime logs it at the diagnostic's
   * level), never shown to clients (host paths stay out of every API).
   */
  hostDetail?: string;
}

/** A write failed (disk full, I/O error). The store stays usable. */
export class StoreWriteError extends Error {
  override readonly name = "StoreWriteError";
}

/** An append did not continue its log's sequence (see the contract above). */
export class StoreSequenceError extends Error {
  override readonly name = "StoreSequenceError";
}

/**
 * A read met damaged data (a record failing its checksum). The worker it
 * belongs to is quarantined; the message names the damage, never a host path.
 */
export class StoreDataError extends Error {
  override readonly name: string = "StoreDataError";
}

/** The store cannot be opened as configured (e.g. a conflicting runtime id). */
export class StoreConflictError extends Error {
  override readonly name = "StoreConflictError";
}
