import { checkedLimitValues, fitDefaultsToMaximums, LimitsError, MAX_UINT32 } from "./limit-rules.js";

/**
 * Every bound the Runtime enforces, in one place, so they can be documented
 * (RuntimeLimits in the API) and configured. Defaults fit a 2-core host.
 */
export interface Limits {
  /** Largest page honoured by List RPCs (larger requests are clamped). */
  maxPageSize: number;
  /** Page size when a request asks for 0. */
  defaultPageSize: number;
  /**
   * Largest input text in UTF-8 bytes. When not configured it is lowered,
   * if need be, so that a run holding the largest input fits a message
   * (see {@link resolveLimits}).
   */
  maxInputBytes: number;
  /** Queued inputs per worker behind the active run. */
  maxQueueDepth: number;
  /** Largest ReadTranscript limit (larger requests are clamped). */
  maxTranscriptRead: number;
  /** ReadTranscript limit when a request asks for 0. */
  defaultTranscriptRead: number;
  /**
   * Largest request or response message in bytes (the server's read and
   * write limit). Every response is cut to fit it, and the byte bounds of
   * {@link byteBounds} are derived from it.
   */
  maxMessageBytes: number;
  /** Concurrent watch streams per worker. */
  maxWatchersPerWorker: number;
  /** Durable worker events retained for resuming watches (memory store). */
  eventRetention: number;
  /**
   * Bytes of durable events retained per event log for resuming watches
   * (memory store; each worker's log and the runtime-wide one), beside the
   * count: a log of large events (every run_changed carries the run's input)
   * is trimmed by bytes long before it has `eventRetention` of them.
   */
  eventRetentionBytes: number;
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
  /** Mounts per worker (CreateWorkerRequest.mounts). */
  maxMounts: number;
  /** Longest tool call id accepted by ResolveApproval, in characters. */
  maxToolCallIdLength: number;
  /** Largest approval reason in UTF-8 bytes. */
  maxApprovalReasonBytes: number;
  /** Diagnostics kept; the oldest are dropped past this. */
  maxDiagnostics: number;
  /** Events buffered for one slow watcher before its stream is ended. */
  maxSubscriberBacklog: number;
  /**
   * Encoded bytes of the events buffered for one slow watcher before its
   * stream is ended, beside the count: a few runs with large inputs queue
   * megabytes long before `maxSubscriberBacklog` events.
   */
  maxSubscriberBacklogBytes: number;
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
  /**
   * How long closing waits for the store: for the writes the drain and
   * requests set off, and for the store's own close, beyond the
   * `cancelGraceMs` a run may take to wind down. Past both, close() rejects
   * (CloseTimeoutError, naming what did not settle) instead of waiting on a
   * hung disk forever; what did not settle may not be on disk. A worker's
   * delete waits as long for the store's delete, then answers UNAVAILABLE
   * and keeps the worker until the store answers (worker-deletes.ts).
   */
  flushTimeoutMs: number;
  /**
   * How long locating a worker's workspace and mounts on the host (the
   * execution backend's hostPath, symlinks resolved) may take, all of them
   * together, and each workspace root at start-up. Past it CreateWorker is
   * refused (UNAVAILABLE, HOST_PATH_UNAVAILABLE), a worker being restored
   * loses its leases, a root refuses start-up: a hung network mount never
   * blocks the runtime for longer. The execution backend gets it too
   * (ExecutionBackend.ready), for each of its own lookups: private paths,
   * the check of a bundle's allowed programs.
   */
  hostPathTimeoutMs: number;
}

/**
 * The longest provider tool-call id a run keeps as it is (the engine's
 * rule, chunk-accumulator.ts); a longer or odd one is replaced by a
 * generated id, shorter still. ResolveApproval must accept every id a run
 * hands out, so `maxToolCallIdLength` may not be configured below this.
 */
export const MAX_KEPT_TOOL_CALL_ID_LENGTH = 64;

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
  eventRetentionBytes: 64 * 1024 * 1024,
  maxWorkers: 100_000,
  maxLabels: 32,
  maxLabelValueBytes: 256,
  maxDisplayNameBytes: 200,
  maxIntentBytes: 4096,
  maxWorkspacePathBytes: 1024,
  maxMounts: 8,
  maxToolCallIdLength: 256,
  maxApprovalReasonBytes: 1024,
  maxDiagnostics: 1000,
  maxSubscriberBacklog: 50_000,
  maxSubscriberBacklogBytes: 64 * 1024 * 1024,
  maxEventsPerMessage: 512,
  requestIdMemory: 1024,
  cancelGraceMs: 5_000,
  heartbeatIntervalMs: 15_000,
  storeProbeIntervalMs: 5_000,
  flushTimeoutMs: 5_000,
  hostPathTimeoutMs: 5_000,
};

/** The backlog bounds of every watcher's subscription (subscription.ts). */
export function subscriberBacklog(limits: Pick<Limits, "maxSubscriberBacklog" | "maxSubscriberBacklogBytes">): {
  maxItems: number;
  maxBytes: number;
} {
  return { maxItems: limits.maxSubscriberBacklog, maxBytes: limits.maxSubscriberBacklogBytes };
}

/**
 * Room in a stream event for its own fields around the entry or run it
 * carries (seq, cursor, time, ids).
 */
export const EVENT_RESERVE_BYTES = 1024;

/**
 * Room in a run for its fields besides the input and a pending tool call's
 * arguments: ids, status, usage, timestamps, and its error, whose message
 * is cut to {@link MAX_RUN_ERROR_MESSAGE_BYTES}.
 */
export const RUN_RESERVE_BYTES = 4096;

/** How many decisions taken with a request_id a run keeps (Run.resolved_approvals). */
export const MAX_RESOLVED_APPROVALS = 16;

/** A kept decision besides its reason: its request_id (at most 128), tool-call id (at most 64 kept), flag and framing. */
const RESOLVED_APPROVAL_FIXED_BYTES = 128 + 64 + 32;

/**
 * The bytes a run may give its input and a pending tool call's arguments
 * together: a message less the response's, the event's and the run's own
 * fields and its last decisions at their largest. A run within it fits one
 * message, so its run_changed event can always be sent.
 */
export function runPayloadRoom(limits: Pick<Limits, "maxMessageBytes" | "maxApprovalReasonBytes">): number {
  const decisions = MAX_RESOLVED_APPROVALS * (RESOLVED_APPROVAL_FIXED_BYTES + limits.maxApprovalReasonBytes);
  return limits.maxMessageBytes - RESPONSE_RESERVE_BYTES - EVENT_RESERVE_BYTES - RUN_RESERVE_BYTES - decisions;
}

/** Longest run error message kept, in UTF-8 bytes (a provider's text can be long). */
export const MAX_RUN_ERROR_MESSAGE_BYTES = 2048;

/** Room kept in every response for fields besides its list (see message-budget.ts). */
export const RESPONSE_RESERVE_BYTES = 1024;

/**
 * Byte bounds derived from `maxMessageBytes`, so that everything the
 * runtime accepts can be delivered (any single entry, event and run, and
 * the first message of a WatchWorker stream):
 *
 * - `maxEntryBytes`: the largest transcript entry a run may commit, the
 *   message budget less an event's own fields; a bigger commit fails the
 *   run with LIMIT_EXCEEDED, whatever the execution backend's own caps.
 * - `maxInFlightBytes`: a run's output not yet committed (streamed text,
 *   reasoning and tool-call arguments) plus the arguments of a tool call
 *   awaiting approval, half the budget; past it the run fails with
 *   LIMIT_EXCEEDED.
 * - `maxQueuedInputBytes`: the inputs queued behind a worker's active run
 *   together, a quarter of the budget; past it ENQUEUE and INTERRUPT get
 *   QUEUE_FULL.
 *
 * A WatchWorker snapshot holds the worker, the active run (input and
 * pending arguments), the queued runs and the in-flight blocks; with the
 * defaults its worst case stays under `maxMessageBytes` (checked by a
 * test). Lists, reads and batches are cut by bytes (message-budget.ts).
 */
export interface ByteBounds {
  maxEntryBytes: number;
  maxInFlightBytes: number;
  maxQueuedInputBytes: number;
}

/** The byte bounds of {@link ByteBounds} for these limits. */
export function byteBounds(limits: Pick<Limits, "maxMessageBytes">): ByteBounds {
  const budget = limits.maxMessageBytes - RESPONSE_RESERVE_BYTES;
  return {
    maxEntryBytes: budget - EVENT_RESERVE_BYTES,
    maxInFlightBytes: Math.floor(budget / 2),
    maxQueuedInputBytes: Math.floor(budget / 4),
  };
}

/**
 * Throws unless a backlog or retention byte bound is a whole number from
 * `maxMessageBytes` (one event of the largest size must fit, or a watcher
 * keeping up could be ended by one event) to {@link MAX_UINT32}.
 */
function checkByteBound(limits: Limits, name: "maxSubscriberBacklogBytes" | "eventRetentionBytes"): void {
  const value = limits[name];
  if (Number.isInteger(value) && value >= limits.maxMessageBytes && value <= MAX_UINT32) return;
  throw new LimitsError(
    name,
    `${name} ${value} must be a whole number of bytes from maxMessageBytes (${limits.maxMessageBytes}) to ${MAX_UINT32}`,
  );
}

/**
 * The limits a runtime runs with: the defaults, then the configured
 * values, each a whole number in its range (limit-rules.ts; an unknown key
 * is refused, an undefined one is unset; a default page size or transcript
 * read above its maximum is lowered to it when unconfigured). Every refusal
 * is a LimitsError naming the key. A tool-call id limit below {@link MAX_KEPT_TOOL_CALL_ID_LENGTH}
 * is refused, and so is a byte bound of a watcher's backlog or of event
 * retention below `maxMessageBytes` or above a uint32 (an unconfigured one
 * is raised to `maxMessageBytes`). The largest input must fit one message inside a run and its
 * event: an unconfigured `maxInputBytes` is lowered to fit a small
 * `maxMessageBytes`; a configured one that cannot fit is a configuration
 * error, thrown here rather than found by a client whose run can never be
 * delivered.
 */
export function resolveLimits(given: Partial<Limits>): Limits {
  const configured = checkedLimitValues(given);
  const limits: Limits = { ...DEFAULT_LIMITS, ...configured };
  fitDefaultsToMaximums(limits, configured);
  if (!(limits.maxToolCallIdLength >= MAX_KEPT_TOOL_CALL_ID_LENGTH)) {
    throw new LimitsError(
      "maxToolCallIdLength",
      `maxToolCallIdLength ${limits.maxToolCallIdLength} is below the ${MAX_KEPT_TOOL_CALL_ID_LENGTH} characters ` +
        "of the tool-call ids a run keeps; ResolveApproval would refuse ids the runtime itself handed out",
    );
  }
  for (const name of ["maxSubscriberBacklogBytes", "eventRetentionBytes"] as const) {
    if (configured[name] === undefined) limits[name] = Math.max(limits[name], limits.maxMessageBytes);
    checkByteBound(limits, name);
  }
  const inputRoom = runPayloadRoom(limits);
  if (inputRoom < 1) {
    throw new LimitsError(
      "maxMessageBytes",
      `maxMessageBytes ${limits.maxMessageBytes} leaves no room for a run's input ` +
        `(with maxApprovalReasonBytes ${limits.maxApprovalReasonBytes} for each of a run's last ${MAX_RESOLVED_APPROVALS} decisions)`,
    );
  }
  if (limits.maxInputBytes > inputRoom) {
    if (configured.maxInputBytes !== undefined) {
      throw new LimitsError(
        "maxInputBytes",
        `maxInputBytes ${limits.maxInputBytes} does not fit maxMessageBytes ${limits.maxMessageBytes} ` +
          `(at most ${inputRoom} with a run's and an event's own fields and its last ${MAX_RESOLVED_APPROVALS} decisions)`,
      );
    }
    limits.maxInputBytes = inputRoom;
  }
  return limits;
}
