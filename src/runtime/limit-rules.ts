import type { Limits } from "./limits.js";
import { MIN_LOOKUP_MS } from "./unanswered-lookups.js";

/**
 * A configured limit createRuntime cannot run with (RuntimeOptions.limits,
 * or the top-level heartbeatIntervalMs / storeProbeIntervalMs): not a
 * whole number in its range, inconsistent with another limit, or a key
 * that names no limit (a misspelling would otherwise be ignored without a
 * word). `key` names the limit.
 */
export class LimitsError extends Error {
  override readonly name = "LimitsError";

  constructor(
    readonly key: string,
    message: string,
  ) {
    super(`limits: ${message}`);
  }
}

/** Largest count or byte bound: RuntimeLimits reports them as uint32. */
export const MAX_UINT32 = 0xffff_ffff;
/** Largest delay a Node timer keeps: a longer one fires at once (a spin, for an interval). */
export const MAX_TIMER_MS = 2 ** 31 - 1;
const count = [1, MAX_UINT32] as const;
const none = [0, MAX_UINT32] as const;

/**
 * Each limit's range. Counts and byte bounds start at 1, save those where
 * 0 means "none" (no queueing, labels, mounts, or no grace for a cancelled
 * run); intervals start where a timer stops spinning (5 ms), a host lookup
 * where it can answer at all (MIN_LOOKUP_MS).
 */
const RANGES: Record<keyof Limits, readonly [min: number, max: number]> = {
  maxPageSize: count,
  defaultPageSize: count,
  maxInputBytes: count,
  maxQueueDepth: none,
  maxTranscriptRead: count,
  defaultTranscriptRead: count,
  maxMessageBytes: count,
  maxWatchersPerWorker: count,
  eventRetention: count,
  eventRetentionBytes: count,
  maxWorkers: count,
  maxLabels: none,
  maxLabelValueBytes: count,
  maxDisplayNameBytes: count,
  maxIntentBytes: count,
  maxWorkspacePathBytes: count,
  maxMounts: none,
  maxToolCallIdLength: count,
  maxApprovalReasonBytes: count,
  maxDiagnostics: count,
  maxSubscriberBacklog: count,
  maxSubscriberBacklogBytes: count,
  maxEventsPerMessage: count,
  requestIdMemory: count,
  cancelGraceMs: [0, MAX_TIMER_MS],
  heartbeatIntervalMs: [5, MAX_TIMER_MS],
  storeProbeIntervalMs: [5, MAX_TIMER_MS],
  flushTimeoutMs: [1, MAX_TIMER_MS],
  hostPathTimeoutMs: [MIN_LOOKUP_MS, MAX_TIMER_MS],
};

/**
 * The configured limits without their undefined keys (an undefined value
 * means unset, as an optional field does), each checked against its range;
 * a key naming no limit is refused. Throws a {@link LimitsError}.
 */
export function checkedLimitValues(configured: Partial<Limits>): Partial<Limits> {
  const checked: Partial<Record<keyof Limits, number>> = {};
  for (const [key, value] of Object.entries(configured)) {
    if (value === undefined) continue;
    if (!Object.hasOwn(RANGES, key)) {
      throw new LimitsError(key, `${key} is not a limit (the limits are ${Object.keys(RANGES).join(", ")})`);
    }
    const [min, max] = RANGES[key as keyof Limits];
    if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
      throw new LimitsError(key, `${key} ${String(value)} must be a whole number from ${min} to ${max}`);
    }
    checked[key as keyof Limits] = value;
  }
  return checked;
}

/**
 * A default (page size, transcript read) above its maximum: an unconfigured
 * one is lowered to it, a configured one is a {@link LimitsError}.
 */
export function fitDefaultsToMaximums(limits: Limits, configured: Partial<Limits>): void {
  const pairs = [
    ["defaultPageSize", "maxPageSize"],
    ["defaultTranscriptRead", "maxTranscriptRead"],
  ] as const;
  for (const [key, maxKey] of pairs) {
    if (limits[key] <= limits[maxKey]) continue;
    if (configured[key] !== undefined) throw new LimitsError(key, `${key} ${limits[key]} is above ${maxKey} ${limits[maxKey]}`);
    limits[key] = limits[maxKey];
  }
}
