/**
 * The embeddable Runtime core. It imports no network server, file store or
 * model client: those are plugged in through `RuntimeStore` and
 * `ExecutionBackend`. Everything outside src/runtime imports the core from
 * here only (checked by test/runtime/import-graph.test.ts).
 *
 * Like connect-es's index, the exports come in two parts: above, what an
 * embedder uses to run a Runtime; below, what someone implementing a store
 * or an execution backend plugs into it with.
 */
import { keepByteOrderMarks } from "./text-encoding.js";

// Process-wide, before anything decodes: a string's leading U+FEFF is content.
keepByteOrderMarks();

// ---- Above: embedding a Runtime ----

/** Build a Runtime and call its RPC methods in-process (the server serves the same object). */
export { RUNTIME_VERSION } from "./runtime-version.js";
export { createRuntime, type InputOptions, type Runtime, type RuntimeOptions, type RuntimeStats } from "./runtime.js";
/** Options every watch stream takes (abort signal, binary encoding). */
export type { WatchOptions } from "./watch.js";
/** A planned binary encoder, byte-identical to protobuf-es's toBinary, for the per-run encodes (stores, unary responses). */
export { createMessageEncoder, encodeMessage, type MessageEncoder } from "./message-encoder.js";
/** A planned deep copy, equal to protobuf-es's clone, for the per-run copies (stores, handed-out Runs and Workers). */
export { cloneMessage } from "./message-clone.js";
/** The ready gRPC frame of a binary watch batch, which a gRPC server writes as it is (see wire-batch.ts). */
export { encodedBatchFrame, GRPC_FRAME_HEADER_BYTES } from "./wire-batch.js";
/** The one error type the core throws, with its wire code and typed reason. */
export { RuntimeError } from "./errors.js";
/**
 * The wire types an embedder switches on and names, from the generated code
 * (gen/, the same objects the generated clients use): a RuntimeError's
 * `reason`, the enums of what the methods hand out, and those messages' types.
 */
export { ErrorReason, ErrorDetailSchema, type ErrorDetail } from "../../gen/worker_runtime/v1/errors_pb.js";
export { BusyPolicy, type WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
export { RunStatus, StopReason, type Run } from "../../gen/worker_runtime/v1/run_pb.js";
export { ConnectivityState, WorkerStatus, type Worker } from "../../gen/worker_runtime/v1/worker_pb.js";
export { DiagnosticSeverity, RuntimeStatus, type Runtime as RuntimeSummary } from "../../gen/worker_runtime/v1/runtime_pb.js";
export { ApprovalDecision, type StreamInputResponse } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
export type { RuntimeEvent, RuntimeSnapshot, WorkerEvent, WorkerSnapshot } from "../../gen/worker_runtime/v1/events_pb.js";
export type { TranscriptEntry } from "../../gen/worker_runtime/v1/transcript_pb.js";
export type { WatchRuntimeResponse, WatchWorkerResponse } from "../../gen/worker_runtime/v1/worker_observation_pb.js";
/** Why close() rejected: the store did not settle within limits.cancelGraceMs + flushTimeoutMs; names what did not. */
export { CloseTimeoutError } from "./runtime-shutdown.js";
/** Run statuses after which a run produces nothing more (a Backend's relay follows runs by them, as the core does). */
export { TERMINAL_RUN_STATUSES } from "./in-flight.js";
/** Request-field rules a Backend applies to what it routes by, so it refuses what a Runtime refuses, the same way. */
export { checkEnumList, checkId, checkLabels } from "./validation.js";
/** Counts of a request's lists, checked before any per-entry work. */
export { BUNDLE_BOUNDS, checkBundleCounts, checkCreateWorkerCounts } from "./request-bounds.js";
/** Why workspace roots overlap on the host: createRuntime refuses such roots with a WorkspaceRootsError. */
export { rootsOverlap, WorkspaceRootsError } from "./host-locations.js";
export { type HostLookups, type LookupOutcome, MAX_UNANSWERED_LOOKUPS, MIN_LOOKUP_MS, UnansweredLookups } from "./unanswered-lookups.js";
/** Every bound the Runtime enforces, and their defaults. */
export { DEFAULT_LIMITS, type Limits, MAX_KEPT_TOOL_CALL_ID_LENGTH } from "./limits.js";
/** Why createRuntime refused a configured limit (out of range, inconsistent, or no such limit); names the key. */
export { LimitsError, MAX_TIMER_MS } from "./limit-rules.js";
/** The logging seam, and what a log line may say about an error. */
export { childLogger, silentLogger, type LogFields, type Logger } from "./logger.js";
export { spanLogFields, traceLogFields } from "./trace-log-fields.js";
export { bounded, errorLogFields, MAX_LOGGED_PAYLOAD_CHARS } from "./error-log-fields.js";
/** The metrics seam (what is counted; an edge decides where it goes). */
export {
  noopMetrics,
  type ProviderCallRecord,
  type RuntimeMetrics,
  type StoreAppendKind,
  type WatchStreamKind,
} from "./metrics.js";
/** The default, in-memory store. */
export { createMemoryStore, type MemoryStoreOptions } from "./memory-store.js";
/** Config bundles: their digest and canonical form (a Backend builds bundles with these), host secrets. */
export { bundleDigest, canonicalBundle } from "./bundle-digest.js";
export type { HostSecrets } from "./host-secrets.js";

// ---- Below: implementing a store ----

/** The store contract, what it hands back at open, and its typed errors. */
export {
  StoreConflictError,
  StoreDataError,
  StoreSequenceError,
  StoreWriteError,
  type OpenedStore,
  type PutRunInit,
  type RestoredWorker,
  type RuntimeStore,
  type StoreDiagnostic,
  type DamagedConfigBundle,
  type StoredEvent,
  type StoredRun,
  type StoreKindName,
  type StoreOpenInit,
  type TranscriptRange,
  type WorkerRecord,
} from "./store.js";
/** SendInput's idempotency rule: stores keep the fingerprint so it survives restarts. */
export { inputFingerprint } from "./fingerprint.js";
/** The bounded, insertion-ordered request-id memory a store rebuilds on restore, as the core keeps it. */
export { RequestIdMemory } from "./request-id-memory.js";

// ---- Below: implementing an execution backend ----

/** The backend contract: what a run gets, the sink it writes through, how it ends. */
export {
  PROGRAM_CHECK_UNANSWERED,
  RunClosedError,
  type ApprovalResult,
  type BackendAvailability,
  type BackendHost,
  type DiagnosticsReporter,
  type ExecutionBackend,
  type ExecutionLimits,
  type PendingToolCall,
  type ProgramProblem,
  type RetryInit,
  type RunOutcome,
  type RunRequest,
  type RunMount,
  type RunResume,
  type RunSink,
  type ToolCallDeltaInit,
} from "./execution-backend.js";
/** The builtin profile every runtime offers, which backends complete. */
export { COMPANION_PROFILE, DEFAULT_MAX_TURNS } from "./profiles.js";
export { checkProfileRules, MAX_PROFILE_TURNS } from "./profile-rules.js";
export { checkBundle, MAX_BUNDLE_BYTES } from "./config-bundles.js";
/** The secret-name rule, for host configuration that must name only secrets a bundle can use. */
export { checkSecretName } from "./host-secrets.js";
/** The tool capabilities a worker can be granted. */
export { TOOL_CAPABILITIES, WRITE_CAPABILITIES, isToolCapability, type ToolCapability } from "./capabilities.js";
