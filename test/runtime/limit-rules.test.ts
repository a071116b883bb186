import { describe, expect, it } from "vitest";
import { createRuntime, DEFAULT_LIMITS, type Limits, LimitsError } from "../../src/runtime/index.js";

/**
 * createRuntime checks every configured limit (RuntimeOptions.limits and
 * the top-level heartbeatIntervalMs / storeProbeIntervalMs). Found by an
 * audit embedding the Runtime: heartbeatIntervalMs 0 sent heartbeats in a
 * spin, maxPageSize NaN made ListWorkers return 0 of 1 worker,
 * maxWatchersPerWorker -1 refused every watch, and a misspelled key was
 * ignored without a word. Each is now a LimitsError naming the key.
 */

const MAX_UINT32 = 0xffff_ffff;
const MAX_TIMER_MS = 2 ** 31 - 1;

/** [key, a value refused] for every limit: the key named in the error. */
const refused: Array<[string, unknown]> = [
  ["heartbeatIntervalMs", 0],
  ["heartbeatIntervalMs", 1],
  ["heartbeatIntervalMs", MAX_TIMER_MS + 1],
  ["storeProbeIntervalMs", 0],
  ["storeProbeIntervalMs", -5],
  ["hostPathTimeoutMs", 0],
  ["flushTimeoutMs", 0],
  ["flushTimeoutMs", Number.POSITIVE_INFINITY],
  ["cancelGraceMs", -1],
  ["cancelGraceMs", MAX_TIMER_MS + 1],
  ["maxPageSize", Number.NaN],
  ["maxPageSize", 0],
  ["defaultPageSize", 0],
  ["defaultPageSize", DEFAULT_LIMITS.maxPageSize + 1],
  ["maxWatchersPerWorker", -1],
  ["maxWatchersPerWorker", 0],
  ["maxWatchersPerWorker", 1.5],
  ["maxWatchersPerWorker", "8"],
  ["maxQueueDepth", -1],
  ["maxTranscriptRead", 0],
  ["defaultTranscriptRead", DEFAULT_LIMITS.maxTranscriptRead + 1],
  ["maxMessageBytes", Number.NaN],
  ["maxMessageBytes", MAX_UINT32 + 1],
  ["maxInputBytes", 0],
  ["eventRetention", 0],
  ["maxWorkers", 0],
  ["maxWorkers", MAX_UINT32 + 1],
  ["maxLabels", -1],
  ["maxLabelValueBytes", 0],
  ["maxDisplayNameBytes", 0],
  ["maxIntentBytes", 0],
  ["maxWorkspacePathBytes", 0],
  ["maxMounts", -1],
  ["maxToolCallIdLength", 63],
  ["maxApprovalReasonBytes", 0],
  ["maxDiagnostics", 0],
  ["maxSubscriberBacklog", 0],
  ["maxSubscriberBacklogBytes", 1],
  ["maxEventsPerMessage", 0],
  ["requestIdMemory", 0],
  ["eventRetentionBytes", 1],
  ["maxPagesize", 10],
  ["heartbeatMs", 1000],
];

describe("configured limits", () => {
  it("checks every limit (a test row per key)", () => {
    const keys = new Set(refused.map(([key]) => key));
    for (const key of Object.keys(DEFAULT_LIMITS)) expect(keys, key).toContain(key);
  });

  it.each(refused)("refuses %s = %s with a LimitsError naming the key", async (key, value) => {
    const error = await createRuntime({ limits: { [key]: value } as Partial<Limits> }).catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(LimitsError);
    expect((error as LimitsError).key).toBe(key);
    expect((error as LimitsError).name).toBe("LimitsError");
    expect((error as Error).message).toContain(key);
  });

  it("refuses a bad top-level heartbeatIntervalMs and storeProbeIntervalMs too", async () => {
    for (const key of ["heartbeatIntervalMs", "storeProbeIntervalMs"] as const) {
      const error = await createRuntime({ [key]: 0 }).catch((caught: unknown) => caught);
      expect(error, key).toBeInstanceOf(LimitsError);
      expect((error as LimitsError).key).toBe(key);
    }
  });

  it("accepts the defaults, zero where zero means none, the smallest sane values, and an undefined key as unset", async () => {
    const accepted: Partial<Limits>[] = [
      { ...DEFAULT_LIMITS },
      { maxQueueDepth: 0, maxLabels: 0, maxMounts: 0, cancelGraceMs: 0 },
      { heartbeatIntervalMs: 5, storeProbeIntervalMs: 5, maxPageSize: 1, defaultPageSize: 1, maxWatchersPerWorker: 1 },
      { maxPageSize: undefined } as Partial<Limits>,
    ];
    for (const limits of accepted) {
      const runtime = await createRuntime({ limits });
      expect(runtime.limits.maxPageSize).toBe(limits.maxPageSize ?? DEFAULT_LIMITS.maxPageSize);
      await runtime.close();
    }
  });
});
