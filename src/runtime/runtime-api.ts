import type { MessageInitShape } from "@bufbuild/protobuf";
import type { Context } from "@opentelemetry/api";
import type { HostSecrets } from "./host-secrets.js";
import type { Run } from "../../gen/worker_runtime/v1/run_pb.js";
import type { RuntimeStatus, Runtime as RuntimeSummary } from "../../gen/worker_runtime/v1/runtime_pb.js";
import type {
  GetConfigBundleRequestSchema,
  GetConfigBundleResponse,
  GetRuntimeRequestSchema,
  ListAllocationsRequestSchema,
  ListAllocationsResponse,
  ListConfigBundlesRequestSchema,
  ListConfigBundlesResponse,
  ListDiagnosticsRequestSchema,
  ListDiagnosticsResponse,
  PutConfigBundleRequestSchema,
  PutConfigBundleResponse,
} from "../../gen/worker_runtime/v1/runtime_management_pb.js";
import type {
  CreateWorkerRequestSchema,
  CreateWorkerResponse,
  DeleteWorkerRequestSchema,
  GetWorkerRequestSchema,
  ListWorkersRequestSchema,
  ListWorkersResponse,
  StopWorkerRequestSchema,
} from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import type {
  CancelRunRequestSchema,
  GetRunRequestSchema,
  ListRunsRequestSchema,
  ListRunsResponse,
  ResolveApprovalRequestSchema,
  SendInputRequestSchema,
  StreamInputRequestSchema,
  StreamInputResponse,
} from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import type {
  ReadTranscriptRequestSchema,
  ReadTranscriptResponse,
  WatchRuntimeRequestSchema,
  WatchRuntimeResponse,
  WatchWorkerRequestSchema,
  WatchWorkerResponse,
} from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import type { Worker } from "../../gen/worker_runtime/v1/worker_pb.js";
import type { ExecutionBackend } from "./execution-backend.js";
import type { Limits } from "./limits.js";
import type { LogFields, Logger } from "./logger.js";
import type { RuntimeMetrics } from "./metrics.js";
import type { RuntimeStore } from "./store.js";
import type { WatchOptions } from "./watch.js";

/**
 * Options of the Runtime methods that accept input, and so may start or
 * resume a run (SendInput, StreamInput, ResolveApproval).
 */
export interface InputOptions {
  /**
   * Added to every line the run this call starts or resumes logs, however
   * much later it starts (a queued run). The server passes the RPC's
   * `request_id` and `rpc_method`; unset, a run's lines name its worker and
   * run only.
   */
  logFields?: LogFields;
  /**
   * The trace context of the call (the server passes its RPC's span): the
   * run it starts or resumes gets its `invoke_agent` span as a child of it,
   * however much later it starts. Unset, the context active when the input
   * is accepted is taken (an embedder's own context manager, if any).
   */
  traceContext?: Context;
}

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
  /**
   * Named workspace roots: name → host directory. Host paths never leave the
   * runtime. They must lie apart on the host (none the same directory as,
   * or inside, another, symlinks resolved by the backend's `hostPath`), or
   * createRuntime throws a WorkspaceRootsError naming both: one directory
   * under two names could be leased for writing twice. A root not located
   * within `limits.hostPathTimeoutMs` is refused the same way.
   */
  workspaceRoots?: Record<string, string>;
  /**
   * This host's secrets by name (see host-secrets.ts): profiles of config
   * bundles name them, runs receive their values. Default: none.
   */
  secrets?: HostSecrets;
  /** Overrides of the default bounds. */
  limits?: Partial<Limits>;
  /** Shorthand for `limits.heartbeatIntervalMs`. */
  heartbeatIntervalMs?: number;
  /** Shorthand for `limits.storeProbeIntervalMs`. */
  storeProbeIntervalMs?: number;
  /** Structured logger; silent by default. */
  logger?: Logger;
  /** Where runs, deliveries and store writes are counted (metrics.ts); nowhere by default. */
  metrics?: RuntimeMetrics;
  /** Software version shown in the summary; this package's own by default. */
  version?: string;
}

/** Counters for operators and leak tests. */
export interface RuntimeStats {
  /** Live watch subscriptions (WatchWorker, WatchRuntime, StreamInput). */
  subscriptions: number;
  /** Of those, the WatchRuntime ones. */
  runtimeSubscriptions: number;
  /** Workers hosted. */
  workers: number;
  /**
   * Store writes are failing (the runtime is DEGRADED, even while DRAINING
   * shows instead). After close: what the drain recorded (runs it
   * interrupted, their events) may not be on disk, so a shutdown was not clean.
   */
  storeWritesFailing: boolean;
}

/**
 * The Runtime: a catalog of Workers, their runs and their observation
 * streams. Every RPC method takes the RPC's request, as the message or a
 * plain object of its fields (its `MessageInitShape`, as connect's
 * generated clients take it; request-message.ts), so the embedded API and
 * the wire API are the same. Errors are `RuntimeError`s with a code and a
 * typed reason; a plain object with a wrong-typed field, or a request that
 * is no object, is INVALID_ARGUMENT naming the field. Built only by
 * {@link createRuntime}.
 */
export interface Runtime {
  readonly runtimeId: string;
  readonly limits: Limits;
  /** SERVING, DRAINING or DEGRADED (store writes failing). */
  readonly status: RuntimeStatus;
  /** True once {@link close} has ended the streams: a long-lived watch (e.g. health) ends too. */
  readonly closed: boolean;
  // RuntimeManagement
  getRuntime(request?: MessageInitShape<typeof GetRuntimeRequestSchema>): RuntimeSummary;
  listDiagnostics(request: MessageInitShape<typeof ListDiagnosticsRequestSchema>): ListDiagnosticsResponse;
  listAllocations(request: MessageInitShape<typeof ListAllocationsRequestSchema>): ListAllocationsResponse;
  /** Verifies, persists and keeps a config bundle (config-bundles.ts). */
  putConfigBundle(request: MessageInitShape<typeof PutConfigBundleRequestSchema>): Promise<PutConfigBundleResponse>;
  getConfigBundle(request: MessageInitShape<typeof GetConfigBundleRequestSchema>): GetConfigBundleResponse;
  listConfigBundles(request: MessageInitShape<typeof ListConfigBundlesRequestSchema>): ListConfigBundlesResponse;
  // WorkerCatalog
  createWorker(request: MessageInitShape<typeof CreateWorkerRequestSchema>): Promise<CreateWorkerResponse>;
  getWorker(request: MessageInitShape<typeof GetWorkerRequestSchema>): Worker;
  listWorkers(request: MessageInitShape<typeof ListWorkersRequestSchema>): ListWorkersResponse;
  stopWorker(request: MessageInitShape<typeof StopWorkerRequestSchema>): Promise<Worker>;
  deleteWorker(request: MessageInitShape<typeof DeleteWorkerRequestSchema>): Promise<void>;
  // WorkerInteraction
  /** Accepts input under a busy policy; returns once the run is durably accepted. */
  sendInput(request: MessageInitShape<typeof SendInputRequestSchema>, options?: InputOptions): Promise<Run>;
  /** Sends input, then streams that run's events until it ends. */
  streamInput(
    request: MessageInitShape<typeof StreamInputRequestSchema>,
    options: WatchOptions & InputOptions,
  ): AsyncGenerator<StreamInputResponse>;
  /** Cancels a run; returns it once ended (or its final state). */
  cancelRun(request: MessageInitShape<typeof CancelRunRequestSchema>): Promise<Run>;
  /** Decides a pending tool call; a parked run resumed by it logs with `options.logFields`. */
  resolveApproval(request: MessageInitShape<typeof ResolveApprovalRequestSchema>, options?: InputOptions): Promise<Run>;
  getRun(request: MessageInitShape<typeof GetRunRequestSchema>): Promise<Run>;
  listRuns(request: MessageInitShape<typeof ListRunsRequestSchema>): Promise<ListRunsResponse>;
  // WorkerObservation
  readTranscript(request: MessageInitShape<typeof ReadTranscriptRequestSchema>): Promise<ReadTranscriptResponse>;
  watchWorker(request: MessageInitShape<typeof WatchWorkerRequestSchema>, options: WatchOptions): AsyncGenerator<WatchWorkerResponse>;
  watchRuntime(request: MessageInitShape<typeof WatchRuntimeRequestSchema>, options: WatchOptions): AsyncGenerator<WatchRuntimeResponse>;
  // Operations
  /**
   * Calls `listener` on every status change, and a last time when the
   * runtime closes (then {@link closed} is true); returns the unsubscribe function.
   */
  onStatusChange(listener: (status: RuntimeStatus) => void): () => void;
  stats(): RuntimeStats;
  /**
   * Graceful shutdown: refuse new work at once, let runs finish for up to
   * `graceMs` (or until `cut` aborts: an operator's second Ctrl-C), then
   * interrupt the rest, waiting for them up to `limits.cancelGraceMs` +
   * `limits.flushTimeoutMs` (close() then reports what did not settle).
   */
  drain(graceMs: number, cut?: AbortSignal): Promise<void>;
  /**
   * Drains at once, ends every stream and closes the store. Bounded by
   * `limits.cancelGraceMs` + `limits.flushTimeoutMs`: a store that has not settled by then (a hung
   * disk) makes it reject with a CloseTimeoutError naming the writes that
   * may not be on disk (also logged at error level); the streams are ended all the same.
   */
  close(): Promise<void>;
  /**
   * Reports damage a store found after start-up: a worker's damage
   * quarantines that worker (FAILED, input refused) while every other worker
   * is served; damage to the runtime-wide log degrades the runtime. Wire it
   * to the file store's `onCorruption`. `message` (files relative to the
   * store) becomes the diagnostic; `hostDetail` (absolute files), when given,
   * goes to the operator's log only.
   */
  reportCorruption(workerId: string | undefined, message: string, hostDetail?: string): void;
}
