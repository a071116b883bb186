import { afterEach, describe, expect, it } from "vitest";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { DiagnosticSeverity } from "../../gen/worker_runtime/v1/runtime_pb.js";
import { MIN_ATTEMPT_MS } from "../../src/engine/provider-stream.js";
import { DiagnosticLog } from "../../src/runtime/diagnostics.js";
import type { RetryInit } from "../../src/runtime/execution-backend.js";
import { errorReply, reply, replyChunks } from "../support/openai-chunks.js";
import { recordingLogger } from "../support/recording-logger.js";
import type { SinkEvent } from "../support/recording-sink.js";
import { profileWith, startHarness, TEST_KEY, type Harness } from "./harness.js";

function retriesOf(events: readonly SinkEvent[]): RetryInit[] {
  return events.flatMap((e) => (e.type === "retry" ? [e.retry] : []));
}

const overloaded = errorReply(503, "overloaded", { "retry-after-ms": "100" });

describe("provider retries", () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  it("spends one retry budget per run, across the requests of a resumed answer", async () => {
    // Each retry waits 200 ms (the provider's retry-after-ms). The first request
    // spends 600 ms and more of the 2000 ms budget before its stream opens (and
    // is cut); the continuation goes on from what is left, where a budget per
    // request would start afresh.
    const slow = errorReply(503, "overloaded", { "retry-after-ms": "200" });
    h = await startHarness({ retry: { budgetMs: 2_000, baseDelayMs: 5, maxDelayMs: 20 }, random: () => 0 });
    h.fake.enqueue(slow, slow, slow, {
      kind: "stream",
      chunks: replyChunks({ text: "Hello world", pieceSize: 4 }),
      end: "cut",
      cutAfter: 2,
    });
    h.fake.setFallback(slow);
    const { outcome, sink } = await h.run({ input: "hi" });
    expect(outcome).toMatchObject({ kind: "failed", reason: ErrorReason.PROVIDER_UNAVAILABLE });
    const opened = sink.events.findIndex((e) => e.type === "turn");
    expect(opened).toBeGreaterThan(0);
    expect(retriesOf(sink.events.slice(0, opened))).toHaveLength(3);
    const afterCut = retriesOf(sink.events.slice(opened));
    expect(afterCut.length).toBeGreaterThan(0);
    // What the first request spent (three 200 ms waits, the attempts, the next wait) is gone.
    expect(afterCut[0]?.budgetRemainingMs).toBeLessThanOrEqual(2_000 - 4 * 200);
    const retries = retriesOf(sink.events);
    expect(retries.reduce((sum, r) => sum + r.delayMs, 0)).toBeLessThanOrEqual(2_000);
    expect(retries.map((r) => r.attempt)).toEqual(retries.map((_, i) => i + 1));
    for (const [i, retry] of retries.entries()) {
      expect(retry).toMatchObject({ delayMs: 200, httpStatus: 503 });
      expect(retry.reason).toContain("HTTP 503: overloaded");
      if (i > 0) expect(retry.budgetRemainingMs).toBeLessThan(retries[i - 1]?.budgetRemainingMs ?? 0);
    }
  });

  it("backs off out of the retry budget before asking again after an error the provider sent in the stream", async () => {
    h = await startHarness({ retry: { budgetMs: 2_000, baseDelayMs: 30, maxDelayMs: 30 }, random: () => 0.5 });
    const limited = { error: { message: "Rate limit reached for requests", type: "rate_limit_exceeded" } };
    const erroring = { kind: "stream", chunks: [limited], end: "hang" } as const;
    h.fake.setFallback(erroring);
    const { outcome, sink } = await h.run({ input: "hi" });
    // Rate limited, as an HTTP 429 would be after the same requests, not a "cut" stream.
    expect(outcome).toMatchObject({ kind: "failed", reason: ErrorReason.RATE_LIMITED });
    expect(outcome.kind === "failed" && outcome.message).toContain("Rate limit reached");
    // maxStreamResumes (2): three requests, each re-ask announced and waited out (half the ceiling: random 0.5) first.
    expect(h.fake.requests).toHaveLength(3);
    const order = sink.events.flatMap((e) => (e.type === "turn" || e.type === "retry" ? [e.type] : []));
    expect(order).toEqual(["turn", "retry", "turn", "retry", "turn"]);
    for (const retry of retriesOf(sink.events)) {
      expect(retry).toMatchObject({ delayMs: 15, httpStatus: 429 });
      expect(retry.reason).toContain("Rate limit reached");
      expect(retry.budgetRemainingMs).toBeLessThanOrEqual(2_000 - 15);
    }
  });

  it("shows each retry to the sink before waiting it out, then completes", async () => {
    h = await startHarness();
    h.fake.enqueue(errorReply(500, "boom"), errorReply(429, "slow down", { "retry-after-ms": "30" }), reply({ text: "ok" }));
    const { outcome, sink } = await h.run({ input: "hi" });
    expect(outcome.kind).toBe("completed");
    expect(retriesOf(sink.events).map((r) => [r.attempt, r.httpStatus])).toEqual([
      [1, 500],
      [2, 429],
    ]);
    expect(retriesOf(sink.events)[1]?.delayMs).toBeGreaterThanOrEqual(30);
    // Each retry is reported before the request it announces.
    const kinds = sink.events.map((e) => e.type).filter((t) => t === "retry" || t === "turn");
    expect(kinds).toEqual(["retry", "retry", "turn"]);
  });

  it("keeps the underlying cause of a dead provider (ECONNREFUSED) in the retries, the log and the error's metadata", async () => {
    h = await startHarness({ retry: { budgetMs: 200, baseDelayMs: 10, maxDelayMs: 20 } });
    const logger = recordingLogger();
    const diagnostics = new DiagnosticLog(10, () => new Date());
    h.backend.attach?.({ diagnostics, logger });
    await h.fake.close();
    const { outcome, sink } = await h.run({ input: "hi" });
    expect(outcome).toMatchObject({ kind: "failed", reason: ErrorReason.PROVIDER_UNAVAILABLE });
    if (outcome.kind !== "failed") return;
    expect(outcome.message).toContain("ECONNREFUSED");
    expect(outcome.metadata).toMatchObject({ cause: "ECONNREFUSED" });
    expect(Number(outcome.metadata?.["attempts"])).toBeGreaterThan(1);
    expect(retriesOf(sink.events).every((r) => r.cause === "ECONNREFUSED" && r.httpStatus === undefined)).toBe(true);
    const warned = logger.lines.filter((l) => l.level === "warn");
    expect(warned.length).toBeGreaterThan(0);
    expect(warned[0]?.fields).toMatchObject({ cause: "ECONNREFUSED", run_id: expect.any(String) });
    expect(logger.lines.at(-1)).toMatchObject({ level: "error", fields: { cause: "ECONNREFUSED" } });
    expect(diagnostics.newestFirst().map((d) => d.code)).toEqual(["provider.unavailable"]);
  });

  it("names the provider's address (scheme://host:port, never a key or query) and what to check when nothing answers there", async () => {
    const dead = await startHarness();
    const port = new URL(dead.fake.baseURL).port;
    await dead.close();
    h = await startHarness({
      baseURL: `http://127.0.0.1:${port}/v1?api-key=query-secret`,
      retry: { budgetMs: 200, baseDelayMs: 10, maxDelayMs: 20 },
    });
    const logger = recordingLogger();
    h.backend.attach?.({ diagnostics: new DiagnosticLog(10, () => new Date()), logger });
    const { outcome, sink } = await h.run({ input: "hi" });
    expect(outcome).toMatchObject({ kind: "failed", reason: ErrorReason.PROVIDER_UNAVAILABLE });
    if (outcome.kind !== "failed") return;
    const address = `http://127.0.0.1:${port}`;
    expect(outcome.message).toContain(`model provider at ${address}`);
    expect(outcome.message).toContain("ECONNREFUSED");
    expect(outcome.message).toMatch(/check that .*OPENAI_BASE_URL/);
    expect(retriesOf(sink.events)[0]?.reason).toContain(address);
    const failedLine = logger.lines.at(-1);
    expect(failedLine).toMatchObject({ level: "error", fields: { provider: address } });
    expect(String(failedLine?.fields["detail"])).toContain(address);
    const everything = JSON.stringify([outcome, sink.events, logger.lines]);
    expect(everything).not.toContain("query-secret");
    expect(everything).not.toContain("/v1");
    expect(everything).not.toContain(TEST_KEY);
  });

  it("puts the HTTP status and attempts in the metadata when 5xx outlast the budget", async () => {
    h = await startHarness({ retry: { budgetMs: 200, baseDelayMs: 10, maxDelayMs: 20 } });
    h.fake.setFallback(errorReply(502, "bad gateway"));
    const { outcome, sink } = await h.run({ input: "hi" });
    expect(outcome).toMatchObject({ kind: "failed", reason: ErrorReason.PROVIDER_UNAVAILABLE, metadata: { http_status: "502" } });
    const attempts = outcome.kind === "failed" ? Number(outcome.metadata?.["attempts"]) : Number.NaN;
    // Every attempt but the last was reported as a retry.
    expect(attempts).toBe(retriesOf(sink.events).length + 1);
    // The provider saw every attempt, except perhaps the last: its timeout is cut to what is left of the
    // budget, which can be as little as MIN_ATTEMPT_MS, and it may be aborted before this process's fake reads it.
    expect(h.fake.requests.length).toBeGreaterThanOrEqual(attempts - 1);
    expect(h.fake.requests.length).toBeLessThanOrEqual(attempts);
  });

  it("makes no retry the wait would leave under MIN_ATTEMPT_MS of the budget: the run fails at once", async () => {
    // A 429 asking for 991 ms of a 1000 ms budget: after the attempt's own time, under 10 ms would be left.
    h = await startHarness({ retry: { budgetMs: 1_000, baseDelayMs: 5, maxDelayMs: 20 } });
    expect(MIN_ATTEMPT_MS).toBe(10);
    h.fake.setFallback(errorReply(429, "slow down", { "retry-after-ms": "991" }));
    const { outcome, sink } = await h.run({ input: "hi" });
    expect(outcome).toMatchObject({
      kind: "failed",
      reason: ErrorReason.RATE_LIMITED,
      metadata: { attempts: "1", http_status: "429", retry_after_ms: "991" },
    });
    // Says why it gave up so soon: the provider's own wait was longer than the budget had left.
    const message = outcome.kind === "failed" ? outcome.message : "";
    expect(message).toMatch(/^gave up after 1 attempt within the run's retry budget \(the provider asked to wait 0\.991 s\); last error: /);
    expect(retriesOf(sink.events)).toEqual([]);
    expect(h.fake.requests.length).toBe(1);
  });

  it("makes the retry when the wait leaves at least MIN_ATTEMPT_MS", async () => {
    h = await startHarness({ retry: { budgetMs: 1_000, baseDelayMs: 5, maxDelayMs: 20 } });
    h.fake.enqueue(errorReply(429, "slow down", { "retry-after-ms": "900" }), reply({ text: "ok" }));
    const { outcome, sink } = await h.run({ input: "hi" });
    expect(outcome.kind).toBe("completed");
    expect(retriesOf(sink.events)).toHaveLength(1);
    expect(retriesOf(sink.events)[0]?.budgetRemainingMs).toBeGreaterThanOrEqual(MIN_ATTEMPT_MS);
  });
});

describe("provider problems in the runtime's diagnostics", () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  it("records a 401 once per code with a count and last-seen time, and clears it when the provider works again", async () => {
    h = await startHarness();
    let now = new Date("2026-01-01T00:00:00Z");
    const diagnostics = new DiagnosticLog(10, () => now);
    h.backend.attach?.({ diagnostics, logger: recordingLogger() });
    h.fake.enqueue(errorReply(401, "Incorrect API key provided"), errorReply(401, "Incorrect API key provided"), reply({ text: "ok" }));
    const first = await h.run({ input: "one" });
    expect(first.outcome).toMatchObject({ kind: "failed", reason: ErrorReason.PROVIDER_AUTH_FAILED, metadata: { http_status: "401" } });
    now = new Date("2026-01-01T00:01:00Z");
    await h.run({ input: "two" });
    const [diagnostic, ...others] = diagnostics.newestFirst();
    expect(others).toEqual([]);
    expect(diagnostic).toMatchObject({ code: "provider.auth_failed", severity: DiagnosticSeverity.ERROR, count: 2 });
    expect(diagnostic?.message).toContain("401");
    expect(diagnostic?.time?.seconds).toBe(BigInt(Date.parse("2026-01-01T00:00:00Z") / 1000));
    expect(diagnostic?.lastSeen?.seconds).toBe(BigInt(Date.parse("2026-01-01T00:01:00Z") / 1000));

    const { outcome } = await h.run({ input: "three" });
    expect(outcome.kind).toBe("completed");
    expect(diagnostics.newestFirst()).toEqual([]);
  });
});

describe("engine settings per profile", () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  it("lets a profile shorten the retry budget, and caps a longer one at the runtime's", async () => {
    h = await startHarness({ retry: { budgetMs: 1_000, baseDelayMs: 5, maxDelayMs: 20 }, random: () => 0 });
    h.fake.setFallback(overloaded);
    const short = await h.run({ input: "hi", profile: profileWith(h.companion, { retryBudgetMs: 150 }) });
    expect(short.outcome).toMatchObject({ kind: "failed", reason: ErrorReason.PROVIDER_UNAVAILABLE });
    // 150 ms at 100 ms a retry: one at most.
    expect(retriesOf(short.sink.events).length).toBeLessThanOrEqual(1);
    const long = await h.run({ input: "hi", profile: profileWith(h.companion, { retryBudgetMs: 3_600_000 }) });
    expect(long.outcome).toMatchObject({ kind: "failed", reason: ErrorReason.PROVIDER_UNAVAILABLE });
    // The runtime's 1000 ms at 100 ms a retry (less the attempts' own time), not an hour's worth.
    expect(retriesOf(long.sink.events).length).toBeGreaterThanOrEqual(2);
    expect(retriesOf(long.sink.events).length).toBeLessThanOrEqual(9);
  });

  it("lets a profile shorten the stream idle timeout", async () => {
    h = await startHarness({ streamIdleTimeoutMs: 120_000 });
    const silent = replyChunks({ text: "Hello there", pieceSize: 6 }).slice(0, 2);
    h.fake.enqueue({ kind: "stream", chunks: silent, end: "hang" }, reply({ text: "there" }));
    const { outcome, sink } = await h.run({ input: "greet", profile: profileWith(h.companion, { streamIdleTimeoutMs: 100 }) });
    expect(outcome.kind).toBe("completed");
    expect(sink.committed("assistantMessage").map((m) => m.text)).toEqual(["Hello ", "there"]);
  }, 10_000);

  it("lets a profile lower the answer cap", async () => {
    h = await startHarness();
    h.fake.enqueue(reply({ text: "x".repeat(50), pieceSize: 7 }));
    const { outcome, sink } = await h.run({ input: "go", profile: profileWith(h.companion, { maxAnswerBytes: 20 }) });
    expect(outcome).toMatchObject({ kind: "failed", reason: ErrorReason.LIMIT_EXCEEDED });
    expect(sink.streamedText()).toBe("x".repeat(20));
  });

  it("reports its bounds for GetRuntime.limits", async () => {
    h = await startHarness({ streamIdleTimeoutMs: 30_000, maxAnswerBytes: 65_536, retry: { budgetMs: 15_000 } });
    expect(h.backend.limits?.()).toEqual({ streamIdleTimeoutMs: 30_000, maxAnswerBytes: 65_536, retryBudgetMs: 15_000 });
  });
});
