import { clone, create, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { createHash } from "node:crypto";
import { BusyPolicy, HeartbeatSchema, type WorkerRef, WorkerRefSchema } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import {
  RuntimeEventSchema,
  type RuntimeEvent,
  WorkerEventSchema,
  type WorkerEvent,
} from "../../gen/worker_runtime/v1/events_pb.js";
import { RunSchema, RunStatus, type Run } from "../../gen/worker_runtime/v1/run_pb.js";
import {
  AllocationMode,
  AllocationSchema,
  DiagnosticSeverity,
  RuntimeCapabilitiesSchema,
  RuntimeLimitsSchema,
  RuntimeSchema,
  RuntimeStatus,
  StoreKind,
  WorkerCountsSchema,
  type Runtime as RuntimeSummary,
} from "../../gen/worker_runtime/v1/runtime_pb.js";
import {
  type GetConfigBundleResponse,
  type ListAllocationsRequest,
  type ListAllocationsResponse,
  ListAllocationsResponseSchema,
  type ListDiagnosticsRequest,
  type ListDiagnosticsResponse,
  ListDiagnosticsResponseSchema,
  type PutConfigBundleResponse,
} from "../../gen/worker_runtime/v1/runtime_management_pb.js";
import type { TranscriptEntry } from "../../gen/worker_runtime/v1/transcript_pb.js";
import {
  type CreateWorkerRequest,
  type CreateWorkerResponse,
  CreateWorkerRequestSchema,
  CreateWorkerResponseSchema,
  type ListWorkersRequest,
  type ListWorkersResponse,
  ListWorkersResponseSchema,
} from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import {
  ApprovalDecision,
  type ListRunsRequest,
  type ListRunsResponse,
  ListRunsResponseSchema,
  type ResolveApprovalRequest,
  type SendInputRequest,
  type StreamInputRequest,
  type StreamInputResponse,
  StreamInputResponseSchema,
} from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import {
  type ReadTranscriptRequest,
  type ReadTranscriptResponse,
  ReadTranscriptResponseSchema,
  type WatchRuntimeRequest,
  type WatchRuntimeResponse,
  WatchRuntimeResponseSchema,
  type WatchWorkerRequest,
  type WatchWorkerResponse,
  WatchWorkerResponseSchema,
} from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import {
  type Input,
  WorkerSchema,
  WorkerStatus,
  type Worker,
} from "../../gen/worker_runtime/v1/worker_pb.js";
import { AllocationManager } from "./allocations.js";
import { ExecutionOffer } from "./execution-offer.js";
import { StoreHealth } from "./store-health.js";
import { orderKey, WorkerDirectory } from "./worker-directory.js";
import { decodeCursor, encodeCursor } from "./cursor.js";
import { DiagnosticLog } from "./diagnostics.js";
import { invalidArgument, notFound, RuntimeError } from "./errors.js";
import { DurableEventStream } from "./event-stream.js";
import type { ExecutionBackend } from "./execution-backend.js";
import { newId } from "./ids.js";
import { TERMINAL_RUN_STATUSES } from "./in-flight.js";
import { DEFAULT_LIMITS, type Limits } from "./limits.js";
import { silentLogger, type Logger } from "./logger.js";
import { createMemoryStore } from "./memory-store.js";
import { decodePageToken, encodePageToken } from "./page-token.js";
import { StoreDataError, StoreWriteError, type RuntimeStore, StoreSequenceError } from "./store.js";
import {
  checkEnum,
  checkId,
  checkLabels,
  checkRequestId,
  checkTextBytes,
  checkWorkerRef,
  resolvePageSize,
} from "./validation.js";
import { checkResumePoint, runWatch, type WatchOptions } from "./watch.js";
import { WorkerSession, type SessionDeps } from "./worker-session.js";

/** Options for {@link createRuntime}. */
export interface RuntimeOptions {
  /** Fixed runtime id; with a durable store the persisted id wins (a conflict is an error). */
  runtimeId?: string;
  /** Human-readable name. */
  displayName?: string;
  /** Persistence; defaults to a memory store. */
  store?: RuntimeStore;
  /** What executes runs. Without one, workers are NOT_CONNECTED and input is refused. */
  executionBackend?: ExecutionBackend;
  /** Named workspace roots: name → host directory. Host paths never leave the runtime. */
  workspaceRoots?: Record<string, string>;
  /** Overrides of the default bounds. */
  limits?: Partial<Limits>;
  /** Interval of heartbeats on idle watch streams. */
  heartbeatIntervalMs?: number;
  /** While the store cannot write, how often a probe write checks whether it can again. */
  storeProbeIntervalMs?: number;
  /** Structured logger; silent by default. */
  logger?: Logger;
  /** Software version shown in the summary. */
  version?: string;
}

/** Counters for operators and leak tests. */
export interface RuntimeStats {
  /** Live watch subscriptions (WatchWorker, WatchRuntime, StreamInput). */
  subscriptions: number;
  /** Workers hosted. */
  workers: number;
}

const KNOWN_BUSY_POLICIES = [
  BusyPolicy.UNSPECIFIED,
  BusyPolicy.REJECT,
  BusyPolicy.ENQUEUE,
  BusyPolicy.INTERRUPT,
] as const;

/**
 * Creates an embedded Runtime: the whole product core in-process, with no
 * network server, file store or model client unless the caller plugs them
 * in. The server serves exactly this object.
 */
export async function createRuntime(options: RuntimeOptions = {}): Promise<Runtime> {
  const limits: Limits = { ...DEFAULT_LIMITS, ...options.limits };
  const store = options.store ?? createMemoryStore({ eventRetention: limits.eventRetention });
  const opened = await store.open({
    ...(options.runtimeId !== undefined ? { runtimeId: checkId("runtime_id", options.runtimeId) } : {}),
    generateRuntimeId: () => newId("rt"),
  });
  const runtime = new Runtime(options, limits, store, opened.runtimeId, opened.lastRuntimeEventSeq);
  for (const diagnostic of opened.diagnostics) {
    runtime.addDiagnostic(diagnostic.severity, diagnostic.code, diagnostic.message, diagnostic.workerId);
  }
  await runtime.restore(opened.workers);
  return runtime;
}

/**
 * The Runtime: a catalog of Workers, their runs and their observation
 * streams. Every public method mirrors one RPC and takes the generated
 * request message, so the embedded API and the wire API are the same.
 * Errors are `RuntimeError`s with a code and a typed reason.
 */
export class Runtime {
  readonly runtimeId: string;
  private readonly workers = new WorkerDirectory();
  private readonly createRequests = new Map<string, string>();
  private readonly runtimeEvents: DurableEventStream<RuntimeEvent>;
  private readonly diagnostics: DiagnosticLog;
  private readonly allocations = new AllocationManager();
  private readonly startedAt = new Date();
  private readonly logger: Logger;
  private readonly offer: ExecutionOffer;
  private readonly sessionDeps: SessionDeps;
  private draining = false;
  private readonly storeHealth = new StoreHealth();
  private storeProbe: NodeJS.Timeout | undefined;
  private readonly statusListeners = new Set<(status: RuntimeStatus) => void>();

  /** @internal use {@link createRuntime}. */
  constructor(
    private readonly options: RuntimeOptions,
    readonly limits: Limits,
    private readonly store: RuntimeStore,
    runtimeId: string,
    lastRuntimeEventSeq: bigint,
  ) {
    this.runtimeId = runtimeId;
    this.logger = options.logger ?? silentLogger;
    this.offer = new ExecutionOffer(options.executionBackend, options.workspaceRoots ?? {});
    this.diagnostics = new DiagnosticLog(1000, () => new Date());
    this.runtimeEvents = new DurableEventStream<RuntimeEvent>({
      stream: "r",
      lastSeq: lastRuntimeEventSeq,
      encode: (event) => toBinary(RuntimeEventSchema, event),
      persistEvents: (events) => store.appendRuntimeEvents(events),
      onPersistResult: (error) => this.onStoreResult("runtime-events", error),
      maxSubscriberBacklog: limits.maxSubscriberBacklog,
    });
    this.sessionDeps = {
      store,
      backend: this.offer.backend,
      limits,
      logger: this.logger,
      now: () => new Date(),
      newRunId: () => newId("r"),
      profileOf: (worker) => this.offer.profileOf(worker),
      workspaceDirOf: (worker) => this.offer.workspaceDirOf(worker),
      onStoreResult: (source, error) => this.onStoreResult(source, error),
      publishWorker: (worker) => this.publish({ case: "workerUpdated", value: worker }),
      publishRun: (run) => this.publish({ case: "runChanged", value: run }),
      checkAcceptingWork: () => this.checkAcceptingWork(),
    };
  }

  // ---- RuntimeManagement ----

  /** The runtime summary. */
  getRuntime(): RuntimeSummary {
    const counts = create(WorkerCountsSchema);
    for (const session of this.workers.values()) {
      switch (session.worker.status) {
        case WorkerStatus.IDLE: counts.idle++; break;
        case WorkerStatus.RUNNING: counts.running++; break;
        case WorkerStatus.STOPPED: counts.stopped++; break;
        case WorkerStatus.FAILED: counts.failed++; break;
        default: break;
      }
    }
    return create(RuntimeSchema, {
      runtimeId: this.runtimeId,
      displayName: this.options.displayName ?? "worker-runtime",
      version: this.options.version ?? "0.1.0",
      startedAt: timestampFromDate(this.startedAt),
      storeKind: this.store.kind === "fs" ? StoreKind.FS : StoreKind.MEMORY,
      status: this.status,
      limits: create(RuntimeLimitsSchema, {
        maxPageSize: this.limits.maxPageSize,
        maxInputBytes: this.limits.maxInputBytes,
        maxQueueDepth: this.limits.maxQueueDepth,
        maxTranscriptRead: this.limits.maxTranscriptRead,
        maxMessageBytes: this.limits.maxMessageBytes,
        maxWatchersPerWorker: this.limits.maxWatchersPerWorker,
        eventRetention: this.limits.eventRetention,
        maxWorkers: this.limits.maxWorkers,
        maxLabels: this.limits.maxLabels,
      }),
      capabilities: create(RuntimeCapabilitiesSchema, {
        executionBackend: this.offer.backendName(),
        executionAvailable: this.offer.notConnectedReason() === undefined,
        executionUnavailableReason: this.offer.notConnectedReason() ?? "",
        profiles: this.offer.profiles(),
        toolCapabilities: this.offer.toolCapabilities(),
        workspaceRoots: this.offer.rootNames(),
      }),
      workerCounts: counts,
      diagnosticCount: this.diagnostics.size,
    });
  }

  /** Diagnostics, newest first, paginated and filtered. */
  listDiagnostics(request: ListDiagnosticsRequest): ListDiagnosticsResponse {
    const pageSize = resolvePageSize("page_size", request.pageSize, this.limits.defaultPageSize, this.limits.maxPageSize);
    checkEnum("min_severity", request.minSeverity, [
      DiagnosticSeverity.UNSPECIFIED,
      DiagnosticSeverity.INFO,
      DiagnosticSeverity.WARNING,
      DiagnosticSeverity.ERROR,
    ]);
    if (request.workerId !== "") checkId("worker_id", request.workerId);
    const after = decodePageToken("page_token", "diagnostics", request.pageToken);
    const matching = this.diagnostics
      .newestFirst()
      .filter((d) => d.severity >= request.minSeverity && (request.workerId === "" || d.worker?.workerId === request.workerId));
    const start = typeof after === "string" ? matching.findIndex((d) => Number(d.diagnosticId.slice(1)) < Number(after.slice(1))) : 0;
    const page = start < 0 ? [] : matching.slice(start, start + pageSize);
    const last = page[page.length - 1];
    const more = start >= 0 && start + pageSize < matching.length;
    return create(ListDiagnosticsResponseSchema, {
      diagnostics: page,
      nextPageToken: more && last ? encodePageToken("diagnostics", last.diagnosticId) : "",
    });
  }

  /** Workspace leases, paginated. */
  listAllocations(request: ListAllocationsRequest): ListAllocationsResponse {
    const pageSize = resolvePageSize("page_size", request.pageSize, this.limits.defaultPageSize, this.limits.maxPageSize);
    const after = decodePageToken("page_token", "allocations", request.pageToken);
    const start = typeof after === "number" ? after : 0;
    const all = this.allocations.list();
    const page = all.slice(start, start + pageSize);
    return create(ListAllocationsResponseSchema, {
      allocations: page.map((a) => clone(AllocationSchema, a)),
      nextPageToken: start + pageSize < all.length ? encodePageToken("allocations", start + pageSize) : "",
    });
  }

  /** Config bundles arrive with the Backend issue; refused as unsupported until then. */
  putConfigBundle(): PutConfigBundleResponse {
    throw unimplemented("PutConfigBundle");
  }

  /** See {@link putConfigBundle}. */
  getConfigBundle(): GetConfigBundleResponse {
    throw unimplemented("GetConfigBundle");
  }

  // ---- WorkerCatalog ----

  /** Creates a worker (idempotent by request_id). */
  async createWorker(request: CreateWorkerRequest): Promise<CreateWorkerResponse> {
    this.checkRuntimeId("runtime_id", request.runtimeId);
    checkRequestId("request_id", request.requestId);
    const fingerprint = fingerprintOf(request);
    if (request.requestId !== "") {
      const existing = this.createRequests.get(request.requestId);
      const session = existing !== undefined ? this.workers.get(existing) : undefined;
      if (session) {
        if (session.record.createFingerprint !== fingerprint) {
          throw new RuntimeError(
            Code.AlreadyExists,
            ErrorReason.IDEMPOTENCY_CONFLICT,
            `request_id "${request.requestId}" was already used to create a different worker`,
            { request_id: request.requestId, worker_id: session.workerId },
          );
        }
        return create(CreateWorkerResponseSchema, { worker: clone(WorkerSchema, session.worker) });
      }
    }
    this.checkAcceptingWork();
    const profile = this.offer.resolveSelector(request.profile);
    checkTextBytes("display_name", request.displayName, 200);
    checkTextBytes("intent", request.intent, 4096);
    checkLabels("labels", request.labels, this.limits.maxLabels);
    const capabilities = this.offer.checkCapabilities(request.capabilities, request.workspace !== undefined);
    const workspace = request.workspace ? this.offer.checkWorkspace(request.workspace.root, request.workspace.path) : undefined;
    if (request.initialInput) checkTextBytes("initial_input.text", request.initialInput.text, this.limits.maxInputBytes);
    if (this.workers.size >= this.limits.maxWorkers) {
      throw new RuntimeError(Code.ResourceExhausted, ErrorReason.LIMIT_EXCEEDED, `the runtime already hosts ${this.workers.size} workers`, {
        limit: String(this.limits.maxWorkers),
      });
    }
    const now = timestampFromDate(new Date());
    const ref = create(WorkerRefSchema, { runtimeId: this.runtimeId, workerId: newId("w") });
    if (workspace) {
      const mode = this.offer.needsWriteLease(capabilities) ? AllocationMode.WRITE : AllocationMode.READ;
      this.allocations.acquire(ref, workspace.root, workspace.path, mode, new Date());
    }
    const worker = create(WorkerSchema, {
      ref,
      displayName: request.displayName,
      intent: request.intent,
      profile,
      capabilities,
      labels: request.labels,
      status: WorkerStatus.IDLE,
      connectivity: this.offer.connectivity(),
      usage: {},
      createdAt: now,
      updatedAt: now,
      ...(workspace ? { workspace: { root: workspace.root, path: workspace.path } } : {}),
    });
    let session: WorkerSession;
    try {
      session = await WorkerSession.create(worker, { createRequestId: request.requestId, createFingerprint: fingerprint }, this.sessionDeps);
    } catch (error) {
      this.allocations.release(ref.workerId);
      throw this.storeError(error);
    }
    this.workers.add(session);
    if (request.requestId !== "") this.createRequests.set(request.requestId, ref.workerId);
    this.publish({ case: "workerCreated", value: clone(WorkerSchema, worker) });
    let initialRun: Run | undefined;
    if (request.initialInput && request.initialInput.text !== "") {
      initialRun = await session.send(request.initialInput, BusyPolicy.REJECT, "");
    }
    return create(CreateWorkerResponseSchema, {
      worker: clone(WorkerSchema, session.worker),
      ...(initialRun ? { initialRun } : {}),
    });
  }

  /** One worker. */
  getWorker(request: { worker?: WorkerRef }): Worker {
    return clone(WorkerSchema, this.session("worker", request.worker).worker);
  }

  /** Workers in creation order, paginated and filtered by status and labels. */
  listWorkers(request: ListWorkersRequest): ListWorkersResponse {
    this.checkRuntimeId("runtime_id", request.runtimeId);
    const pageSize = resolvePageSize("page_size", request.pageSize, this.limits.defaultPageSize, this.limits.maxPageSize);
    for (const [i, status] of request.statuses.entries()) {
      checkEnum(`statuses[${i}]`, status, [
        WorkerStatus.UNSPECIFIED,
        WorkerStatus.IDLE,
        WorkerStatus.RUNNING,
        WorkerStatus.STOPPED,
        WorkerStatus.FAILED,
      ]);
    }
    // UNSPECIFIED matches every status (see worker.proto).
    const statuses = request.statuses.includes(WorkerStatus.UNSPECIFIED) ? [] : request.statuses;
    checkLabels("label_selector", request.labelSelector, this.limits.maxLabels);
    const after = decodePageToken("page_token", "workers", request.pageToken);
    if (typeof after === "number") throw invalidArgument("page_token", "is not a valid page token");
    const selector = Object.entries(request.labelSelector);
    const { workers, more } = this.workers.page(
      after,
      pageSize,
      (worker) =>
        (statuses.length === 0 || statuses.includes(worker.status)) && selector.every(([key, value]) => worker.labels[key] === value),
    );
    const last = workers[workers.length - 1];
    return create(ListWorkersResponseSchema, {
      workers: workers.map((worker) => clone(WorkerSchema, worker)),
      nextPageToken: more && last ? encodePageToken("workers", orderKey(last)) : "",
    });
  }

  /** Stops a worker: cancels its runs, releases its leases, refuses input. Idempotent. */
  async stopWorker(request: { worker?: WorkerRef }): Promise<Worker> {
    const session = this.session("worker", request.worker);
    await this.typedStoreErrors(session.stop());
    this.allocations.release(session.workerId);
    return clone(WorkerSchema, session.worker);
  }

  /** Deletes a stopped or failed worker (or any worker, with force). */
  async deleteWorker(request: { worker?: WorkerRef; force: boolean }): Promise<void> {
    const session = this.session("worker", request.worker);
    const status = session.worker.status;
    if (status !== WorkerStatus.STOPPED && status !== WorkerStatus.FAILED && !request.force) {
      throw new RuntimeError(
        Code.FailedPrecondition,
        ErrorReason.WORKER_NOT_STOPPED,
        `worker ${session.workerId} is not stopped; stop it first or set force`,
      );
    }
    // Also waits for a StopWorker still in progress, so nothing is written after the delete.
    await this.stopWorker(request);
    if (!this.workers.has(session.workerId)) return;
    session.markDeleted();
    this.workers.remove(session);
    this.afterHealthChange(this.storeHealth.forget(`worker:${session.workerId}:`));
    session.events.closeAll();
    this.allocations.release(session.workerId);
    if (session.record.createRequestId !== "") this.createRequests.delete(session.record.createRequestId);
    await this.typedStoreErrors(this.store.deleteWorker(session.workerId));
    this.publish({ case: "workerRemoved", value: clone(WorkerRefSchema, session.worker.ref ?? create(WorkerRefSchema)) });
  }

  // ---- WorkerInteraction ----

  /** Accepts input under a busy policy; returns once the run is durably accepted. */
  async sendInput(request: SendInputRequest | StreamInputRequest): Promise<Run> {
    const session = this.session("worker", request.worker);
    const input = this.checkInput(request.input);
    checkEnum("busy_policy", request.busyPolicy, KNOWN_BUSY_POLICIES);
    checkRequestId("request_id", request.requestId);
    return this.typedStoreErrors(session.send(input, request.busyPolicy, request.requestId));
  }

  /**
   * Sends input, then streams that run's events until it ends. The
   * subscription is taken before the input is sent, so nothing is missed.
   */
  async *streamInput(request: StreamInputRequest, options: WatchOptions): AsyncGenerator<StreamInputResponse> {
    const session = this.session("worker", request.worker);
    const subscription = this.watchSlot(session).subscribe();
    const release = (): void => subscription.close();
    options.signal.addEventListener("abort", release, { once: true });
    try {
      const run = await this.sendInput(request);
      yield create(StreamInputResponseSchema, { run });
      if (TERMINAL_RUN_STATUSES.has(run.status)) return;
      while (!options.signal.aborted) {
        const wait = await subscription.next(this.limits.maxEventsPerMessage, this.heartbeatMs, options.signal);
        if (wait.kind === "closed") {
          if (wait.error) throw wait.error;
          return;
        }
        if (wait.kind === "idle") {
          yield create(StreamInputResponseSchema, { heartbeat: create(HeartbeatSchema) });
          continue;
        }
        const events: WorkerEvent[] = [];
        let ended = false;
        for (const item of wait.items) {
          const event = item.event;
          if (!event || runIdOf(event) !== run.runId) continue;
          events.push(event);
          if (event.kind.case === "runChanged" && TERMINAL_RUN_STATUSES.has(event.kind.value.status)) ended = true;
        }
        if (events.length > 0) yield create(StreamInputResponseSchema, { events });
        if (ended) return;
      }
    } finally {
      options.signal.removeEventListener("abort", release);
      subscription.close();
    }
  }

  /** Cancels a run; returns it once ended (or its final state). */
  async cancelRun(request: { worker?: WorkerRef; runId: string }): Promise<Run> {
    const session = this.session("worker", request.worker);
    checkId("run_id", request.runId);
    return this.typedStoreErrors(session.cancel(request.runId));
  }

  /** Approves or rejects a pending tool call. */
  async resolveApproval(request: ResolveApprovalRequest): Promise<Run> {
    const session = this.session("worker", request.worker);
    checkId("run_id", request.runId);
    if (request.toolCallId === "" || request.toolCallId.length > 256) {
      throw invalidArgument("tool_call_id", "must be 1-256 characters");
    }
    checkEnum("decision", request.decision, [ApprovalDecision.APPROVE, ApprovalDecision.REJECT]);
    checkTextBytes("reason", request.reason, 1024);
    return session.resolveApproval(request.runId, request.toolCallId, request.decision, request.reason);
  }

  /** One run. */
  async getRun(request: { worker?: WorkerRef; runId: string }): Promise<Run> {
    const session = this.session("worker", request.worker);
    checkId("run_id", request.runId);
    return this.typedStoreErrors(session.getRun(request.runId));
  }

  /** A worker's runs, newest first, paginated. */
  async listRuns(request: ListRunsRequest): Promise<ListRunsResponse> {
    const session = this.session("worker", request.worker);
    const pageSize = resolvePageSize("page_size", request.pageSize, this.limits.defaultPageSize, this.limits.maxPageSize);
    checkEnum("status", request.status, [
      RunStatus.UNSPECIFIED,
      RunStatus.QUEUED,
      RunStatus.RUNNING,
      RunStatus.AWAITING_APPROVAL,
      RunStatus.COMPLETED,
      RunStatus.CANCELLED,
      RunStatus.FAILED,
      RunStatus.INTERRUPTED,
    ]);
    const after = decodePageToken("page_token", "runs", request.pageToken);
    if (typeof after === "string") throw invalidArgument("page_token", "is not a valid page token");
    let before = after;
    const runs: Run[] = [];
    let exhausted = false;
    // Filtering may skip runs; read on in bounded chunks until the page is full.
    for (let reads = 0; runs.length < pageSize && reads < 20; reads++) {
      const chunk = await this.typedStoreErrors(this.store.listRuns(session.workerId, before, pageSize));
      if (chunk.length === 0) {
        exhausted = true;
        break;
      }
      for (const { ordinal, run } of chunk) {
        before = ordinal;
        const live = session.activeRun?.runId === run.runId ? session.activeRun : session.queuedRuns.find((q) => q.runId === run.runId);
        const current = live ? clone(RunSchema, live) : run;
        if (request.status !== RunStatus.UNSPECIFIED && current.status !== request.status) continue;
        runs.push(current);
        if (runs.length === pageSize) break;
      }
      if (before === 1) {
        exhausted = true;
        break;
      }
    }
    return create(ListRunsResponseSchema, {
      runs,
      nextPageToken: !exhausted && before !== undefined ? encodePageToken("runs", before) : "",
    });
  }

  // ---- WorkerObservation ----

  /** A bounded slice of the transcript, forward or from the tail. */
  async readTranscript(request: ReadTranscriptRequest): Promise<ReadTranscriptResponse> {
    const session = this.session("worker", request.worker);
    const limit = request.limit === 0 ? this.limits.defaultTranscriptRead : Math.min(request.limit, this.limits.maxTranscriptRead);
    const lastSeq = session.events.lastTranscriptSeq;
    const position = request.position;
    let entries: TranscriptEntry[];
    let hasMore: boolean;
    if (position.case === "afterSeq") {
      const afterSeq = position.value < lastSeq ? position.value : lastSeq;
      entries = await this.typedStoreErrors(this.store.readTranscript(session.workerId, { kind: "after", afterSeq }, limit));
      hasMore = afterSeq + BigInt(entries.length) < lastSeq;
    } else {
      const beforeSeq = position.case === "beforeSeq" && position.value <= lastSeq ? position.value : lastSeq + 1n;
      entries = await this.typedStoreErrors(this.store.readTranscript(session.workerId, { kind: "before", beforeSeq }, limit));
      hasMore = (entries[0]?.seq ?? 1n) > 1n;
    }
    return create(ReadTranscriptResponseSchema, { entries, hasMore, lastSeq });
  }

  /** Streams a worker's events (see WorkerObservation.WatchWorker). */
  watchWorker(request: WatchWorkerRequest, options: WatchOptions): AsyncGenerator<WatchWorkerResponse> {
    const session = this.session("worker", request.worker);
    const afterSeq = decodeCursor("after_cursor", "w", request.afterCursor);
    const delivered = session.events.lastDeliveredSeq;
    checkResumePoint("w", afterSeq, this.store.earliestEventSeq(session.workerId), delivered);
    // Subscribe and cut the snapshot in the same tick: both at the delivery point.
    const subscription = this.watchSlot(session).subscribe();
    const snapshot = session.snapshot();
    return runWatch(
      {
        stream: "w",
        eventSchema: WorkerEventSchema,
        responseSchema: WatchWorkerResponseSchema,
        eventsFieldNo: 1,
        first: create(WatchWorkerResponseSchema, { snapshot }),
        subscription,
        afterSeq,
        snapshotSeq: delivered,
        readStored: (after, limit) => this.typedStoreErrors(this.store.readEvents(session.workerId, after, limit)),
        earliestSeq: () => this.store.earliestEventSeq(session.workerId),
        withEvents: (events) => create(WatchWorkerResponseSchema, { events }),
        heartbeat: (cursor) => create(WatchWorkerResponseSchema, { heartbeat: { cursor } }),
        heartbeatMs: this.heartbeatMs,
        maxEventsPerMessage: this.limits.maxEventsPerMessage,
      },
      options,
    );
  }

  /** Streams runtime-wide events (see WorkerObservation.WatchRuntime). */
  watchRuntime(request: WatchRuntimeRequest, options: WatchOptions): AsyncGenerator<WatchRuntimeResponse> {
    this.checkRuntimeId("runtime_id", request.runtimeId);
    const afterSeq = decodeCursor("after_cursor", "r", request.afterCursor);
    const delivered = this.runtimeEvents.lastDeliveredSeq;
    checkResumePoint("r", afterSeq, this.store.earliestRuntimeEventSeq(), delivered);
    if (this.runtimeEvents.subscriberCount >= this.limits.maxWatchersPerWorker) {
      throw new RuntimeError(Code.ResourceExhausted, ErrorReason.LIMIT_EXCEEDED, "too many WatchRuntime streams", {
        limit: String(this.limits.maxWatchersPerWorker),
      });
    }
    const subscription = this.runtimeEvents.subscribe();
    return runWatch(
      {
        stream: "r",
        eventSchema: RuntimeEventSchema,
        responseSchema: WatchRuntimeResponseSchema,
        eventsFieldNo: 1,
        first: create(WatchRuntimeResponseSchema, {
          snapshot: { runtime: this.getRuntime(), cursor: encodeCursor("r", delivered) },
        }),
        subscription,
        afterSeq,
        snapshotSeq: delivered,
        readStored: (after, limit) => this.typedStoreErrors(this.store.readRuntimeEvents(after, limit)),
        earliestSeq: () => this.store.earliestRuntimeEventSeq(),
        withEvents: (events) => create(WatchRuntimeResponseSchema, { events }),
        heartbeat: (cursor) => create(WatchRuntimeResponseSchema, { heartbeat: { cursor } }),
        heartbeatMs: this.heartbeatMs,
        maxEventsPerMessage: this.limits.maxEventsPerMessage,
      },
      options,
    );
  }

  // ---- Operations ----

  /** SERVING, DRAINING or DEGRADED (store writes failing). */
  get status(): RuntimeStatus {
    if (this.draining) return RuntimeStatus.DRAINING;
    if (this.storeHealth.degraded) return RuntimeStatus.DEGRADED;
    return RuntimeStatus.SERVING;
  }

  /** Calls `listener` on every status change; returns the unsubscribe function. */
  onStatusChange(listener: (status: RuntimeStatus) => void): () => void {
    this.statusListeners.add(listener);
    return () => this.statusListeners.delete(listener);
  }

  /** Counters for operators and leak tests. */
  stats(): RuntimeStats {
    let subscriptions = this.runtimeEvents.subscriberCount;
    for (const session of this.workers.values()) subscriptions += session.events.subscriberCount;
    return { subscriptions, workers: this.workers.size };
  }

  /**
   * Graceful shutdown: refuse new work at once, let runs finish for up to
   * `graceMs`, then interrupt the rest (they become INTERRUPTED).
   */
  async drain(graceMs: number): Promise<void> {
    if (!this.draining) {
      this.draining = true;
      this.emitStatus();
    }
    const deadline = Date.now() + graceMs;
    while (Date.now() < deadline && [...this.workers.values()].some((s) => s.activeRun)) {
      await new Promise((resolve) => setTimeout(resolve, Math.min(50, Math.max(1, deadline - Date.now()))));
    }
    await Promise.all([...this.workers.values()].map((session) => session.interruptAll()));
  }

  /** Drains at once, ends every stream and closes the store. */
  async close(): Promise<void> {
    this.stopStoreProbe();
    await this.drain(0);
    for (const session of this.workers.values()) session.events.closeAll();
    this.runtimeEvents.closeAll();
    await this.store.close();
  }

  /**
   * Reports damage a store found after start-up (e.g. a corrupt record met
   * by a read). A worker's damage quarantines that worker — FAILED, with a
   * diagnostic, input refused — while every other worker is served; damage
   * to the runtime-wide log degrades the runtime. Wire it to the file
   * store's `onCorruption`.
   */
  reportCorruption(workerId: string | undefined, message: string): void {
    this.logger.error("store corruption found", { worker_id: workerId, cause: message });
    if (workerId === undefined) {
      this.afterHealthChange(this.storeHealth.report("runtime-events", new Error(message)));
      this.addDiagnostic(DiagnosticSeverity.ERROR, "store.runtime_log_damaged", message);
      return;
    }
    const session = this.workers.get(workerId);
    if (!session) return;
    this.addDiagnostic(DiagnosticSeverity.ERROR, "store.worker_quarantined", message, workerId);
    this.allocations.release(workerId);
    void session.quarantine(message);
  }

  /** @internal records a diagnostic (store findings, provider problems). */
  addDiagnostic(severity: DiagnosticSeverity, code: string, message: string, workerId?: string): void {
    this.diagnostics.add({
      severity,
      code,
      message,
      ...(workerId !== undefined ? { worker: create(WorkerRefSchema, { runtimeId: this.runtimeId, workerId }) } : {}),
    });
  }

  /** @internal restores workers from the store at start-up. */
  async restore(restored: Parameters<typeof WorkerSession.restore>[0][]): Promise<void> {
    const connectivity = this.offer.connectivity();
    for (const item of restored) {
      const session = await WorkerSession.restore(item, this.sessionDeps, connectivity);
      this.workers.add(session);
      if (item.quarantined !== undefined) {
        this.addDiagnostic(DiagnosticSeverity.ERROR, "worker.quarantined", item.quarantined, session.workerId);
        continue;
      }
      if (session.record.createRequestId !== "") this.createRequests.set(session.record.createRequestId, session.workerId);
      const status = session.worker.status;
      const workspace = session.worker.workspace;
      if (workspace && status !== WorkerStatus.STOPPED && status !== WorkerStatus.FAILED) {
        const mode = this.offer.needsWriteLease(session.worker.capabilities) ? AllocationMode.WRITE : AllocationMode.READ;
        try {
          this.allocations.acquire(session.worker.ref ?? create(WorkerRefSchema), workspace.root, workspace.path, mode, new Date());
        } catch (error) {
          this.addDiagnostic(DiagnosticSeverity.WARNING, "allocation.restore_conflict", String((error as Error).message), session.workerId);
        }
      }
    }
  }

  // ---- internals ----

  private get heartbeatMs(): number {
    return this.options.heartbeatIntervalMs ?? 15_000;
  }

  private watchSlot(session: WorkerSession): DurableEventStream<WorkerEvent> {
    if (session.events.subscriberCount >= this.limits.maxWatchersPerWorker) {
      throw new RuntimeError(
        Code.ResourceExhausted,
        ErrorReason.LIMIT_EXCEEDED,
        `worker ${session.workerId} already has ${session.events.subscriberCount} watchers`,
        { limit: String(this.limits.maxWatchersPerWorker) },
      );
    }
    return session.events;
  }

  private session(field: string, ref: WorkerRef | undefined): WorkerSession {
    const checked = checkWorkerRef(field, ref);
    this.checkRuntimeId(`${field}.runtime_id`, checked.runtimeId);
    const session = this.workers.get(checked.workerId);
    if (!session) throw notFound("worker_id", checked.workerId);
    return session;
  }

  private checkRuntimeId(field: string, runtimeId: string): void {
    checkId(field, runtimeId);
    if (runtimeId !== this.runtimeId) {
      throw new RuntimeError(
        Code.InvalidArgument,
        ErrorReason.RUNTIME_MISMATCH,
        `${field}: "${runtimeId}" is not this runtime (this is "${this.runtimeId}")`,
        { field, runtime_id: this.runtimeId },
      );
    }
  }

  private checkAcceptingWork(): void {
    if (this.draining) {
      throw new RuntimeError(Code.Unavailable, ErrorReason.RUNTIME_DRAINING, "the runtime is shutting down and takes no new work");
    }
  }

  private checkInput(input: Input | undefined): Input {
    if (!input) throw invalidArgument("input", "is required");
    if (input.text === "") throw invalidArgument("input.text", "is required");
    checkTextBytes("input.text", input.text, this.limits.maxInputBytes);
    return input;
  }

  private publish(kind: RuntimeEvent["kind"]): void {
    void this.runtimeEvents
      .emitDurable((seq, cursor) => create(RuntimeEventSchema, { seq, cursor, time: timestampFromDate(new Date()), kind }))
      .catch((error: unknown) => this.logger.error("could not persist a runtime event", { cause: String(error) }));
  }

  /** Records a store write outcome per write path; DEGRADED while any path fails. */
  private onStoreResult(source: string, error: unknown): void {
    const change = this.storeHealth.report(source, error);
    if (change === "failed") {
      this.logger.error("store write failed; runtime degraded", { source, cause: String((error as Error).message ?? error) });
      this.addDiagnostic(DiagnosticSeverity.ERROR, "store.write_failed", "the store cannot write (disk full or I/O error); the runtime is degraded");
    }
    this.afterHealthChange(change);
  }

  private afterHealthChange(change: "failed" | "recovered" | undefined): void {
    if (change === "recovered") this.addDiagnostic(DiagnosticSeverity.INFO, "store.recovered", "store writes succeed again");
    if (change !== undefined) this.emitStatus();
    if (this.storeHealth.degraded) this.startStoreProbe();
    else this.stopStoreProbe();
  }

  /**
   * A path that failed may never be written again (an idle worker), which
   * would leave the runtime DEGRADED for good; so while degraded, a probe
   * write checks now and then whether the store can write again.
   */
  private startStoreProbe(): void {
    const probeWrite = this.store.probeWrite?.bind(this.store);
    if (this.storeProbe || !probeWrite) return;
    this.storeProbe = setInterval(() => {
      probeWrite().then(
        () => this.afterHealthChange(this.storeHealth.clear()),
        () => {},
      );
    }, this.options.storeProbeIntervalMs ?? 5_000);
    this.storeProbe.unref();
  }

  private stopStoreProbe(): void {
    clearInterval(this.storeProbe);
    this.storeProbe = undefined;
  }

  private emitStatus(): void {
    const status = this.status;
    for (const listener of this.statusListeners) listener(status);
  }

  /** Awaits a store operation, converting its failure into a typed error. */
  private async typedStoreErrors<T>(operation: Promise<T>): Promise<T> {
    try {
      return await operation;
    } catch (error) {
      throw this.storeError(error);
    }
  }

  /** Converts store failures into typed errors: damaged data, or a store that cannot write. */
  private storeError(error: unknown): unknown {
    if (error instanceof StoreDataError) {
      return new RuntimeError(Code.DataLoss, ErrorReason.WORKER_FAILED, "the worker's stored history is damaged; see ListDiagnostics", {}, { cause: error });
    }
    if (error instanceof StoreWriteError || error instanceof StoreSequenceError) {
      return new RuntimeError(Code.Unavailable, ErrorReason.STORE_UNAVAILABLE, "the runtime could not persist the request; retry later", {}, { cause: error });
    }
    return error;
  }

}

/** The run an event belongs to, if any. */
function runIdOf(event: WorkerEvent): string | undefined {
  const kind = event.kind;
  switch (kind.case) {
    case "runChanged":
    case "transcriptAppended":
    case "textDelta":
    case "reasoningDelta":
    case "toolCallDelta":
    case "blockDiscarded":
      return kind.value.runId;
    default:
      return undefined;
  }
}

/** Fingerprint of a CreateWorker request without its request_id. */
function fingerprintOf(request: CreateWorkerRequest): string {
  const copy = clone(CreateWorkerRequestSchema, request);
  copy.requestId = "";
  copy.labels = Object.fromEntries(Object.entries(copy.labels).sort(([a], [b]) => a.localeCompare(b)));
  return createHash("sha256").update(toBinary(CreateWorkerRequestSchema, copy, { writeUnknownFields: false })).digest("hex");
}

function unimplemented(rpc: string): RuntimeError {
  return new RuntimeError(Code.Unimplemented, ErrorReason.UNSUPPORTED, `${rpc} is not implemented yet`);
}
