/**
 * The embeddable Runtime core. It imports no network server, file store or
 * model client: those are plugged in through `RuntimeStore` and
 * `ExecutionBackend`.
 */
import { keepByteOrderMarks } from "./text-encoding.js";

// Process-wide, before anything decodes: a string's leading U+FEFF is content.
keepByteOrderMarks();

export { createRuntime, Runtime, type RuntimeOptions, type RuntimeStats } from "./runtime.js";
export { createMemoryStore, type MemoryStoreOptions } from "./memory-store.js";
export {
  StoreConflictError,
  StoreDataError,
  StoreSequenceError,
  StoreWriteError,
  type OpenedStore,
  type RestoredWorker,
  type RuntimeStore,
  type StoreDiagnostic,
  type StoredEvent,
  type StoredRun,
  type StoreKindName,
  type StoreOpenInit,
  type TranscriptRange,
  type WorkerRecord,
} from "./store.js";
export {
  RunClosedError,
  type ApprovalResult,
  type BackendAvailability,
  type ExecutionBackend,
  type PendingToolCall,
  type RunOutcome,
  type RunRequest,
  type RunSink,
  type ToolCallDeltaInit,
} from "./execution-backend.js";
export { RuntimeError } from "./errors.js";
export { DEFAULT_LIMITS, type Limits } from "./limits.js";
export { silentLogger, type Logger } from "./logger.js";
export { inputFingerprint } from "./fingerprint.js";
export { COMPANION_PROFILE } from "./profiles.js";
export type { WatchOptions } from "./watch.js";
