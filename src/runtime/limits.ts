/**
 * Every bound the Runtime enforces, in one place, so they can be documented
 * (RuntimeLimits in the API) and configured. Defaults fit a 2-core host.
 */
export interface Limits {
  /** Largest page honoured by List RPCs (larger requests are clamped). */
  maxPageSize: number;
  /** Page size when a request asks for 0. */
  defaultPageSize: number;
  /** Largest input text in UTF-8 bytes. */
  maxInputBytes: number;
  /** Queued inputs per worker behind the active run. */
  maxQueueDepth: number;
  /** Largest ReadTranscript limit (larger requests are clamped). */
  maxTranscriptRead: number;
  /** ReadTranscript limit when a request asks for 0. */
  defaultTranscriptRead: number;
  /** Largest request or response message in bytes (enforced by the server). */
  maxMessageBytes: number;
  /** Concurrent watch streams per worker. */
  maxWatchersPerWorker: number;
  /** Durable worker events retained for resuming watches (memory store). */
  eventRetention: number;
  /** Workers per runtime. */
  maxWorkers: number;
  /** Labels per worker. */
  maxLabels: number;
  /** Largest label value in UTF-8 bytes. */
  maxLabelValueBytes: number;
  /** Largest worker display name in UTF-8 bytes. */
  maxDisplayNameBytes: number;
  /** Largest worker intent in UTF-8 bytes. */
  maxIntentBytes: number;
  /** Largest workspace path (relative to its root) in UTF-8 bytes. */
  maxWorkspacePathBytes: number;
  /** Longest tool call id accepted by ResolveApproval, in characters. */
  maxToolCallIdLength: number;
  /** Largest approval reason in UTF-8 bytes. */
  maxApprovalReasonBytes: number;
  /** Diagnostics kept; the oldest are dropped past this. */
  maxDiagnostics: number;
  /** Events buffered for one slow watcher before its stream is ended. */
  maxSubscriberBacklog: number;
  /** Events packed into one stream message at most. */
  maxEventsPerMessage: number;
  /** SendInput request ids remembered per worker. */
  requestIdMemory: number;
  /** How long a cancelled run may take to wind down before it is forced to end. */
  cancelGraceMs: number;
  /** Interval of heartbeats on idle watch streams. */
  heartbeatIntervalMs: number;
  /** While the store cannot write, how often a probe write checks whether it can again. */
  storeProbeIntervalMs: number;
}

/** The defaults. */
export const DEFAULT_LIMITS: Limits = {
  maxPageSize: 500,
  defaultPageSize: 50,
  maxInputBytes: 256 * 1024,
  maxQueueDepth: 16,
  maxTranscriptRead: 1000,
  defaultTranscriptRead: 100,
  maxMessageBytes: 4 * 1024 * 1024,
  maxWatchersPerWorker: 256,
  eventRetention: 100_000,
  maxWorkers: 100_000,
  maxLabels: 32,
  maxLabelValueBytes: 256,
  maxDisplayNameBytes: 200,
  maxIntentBytes: 4096,
  maxWorkspacePathBytes: 1024,
  maxToolCallIdLength: 256,
  maxApprovalReasonBytes: 1024,
  maxDiagnostics: 1000,
  maxSubscriberBacklog: 50_000,
  maxEventsPerMessage: 512,
  requestIdMemory: 1024,
  cancelGraceMs: 5_000,
  heartbeatIntervalMs: 15_000,
  storeProbeIntervalMs: 5_000,
};
