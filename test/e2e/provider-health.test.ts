import { afterEach, describe, expect, it } from "vitest";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { DiagnosticSeverity } from "../../gen/worker_runtime/v1/runtime_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { PROTOCOLS } from "../support/harness.js";
import { errorReply, reply, replyChunks } from "../support/openai-chunks.js";
import { startOpenAIServer, type OpenAIServer } from "./openai-harness.js";

describe.each(PROTOCOLS)("provider health, retries and engine settings through the server (%s)", (protocol) => {
  let s: OpenAIServer | undefined;
  afterEach(async () => {
    await s?.close();
    s = undefined;
  });

  it("shows each retry to watchers as a live event and in the run", async () => {
    s = await startOpenAIServer(protocol);
    const worker = await s.newWorker();
    s.fake.enqueue(errorReply(503, "overloaded"), errorReply(429, "slow down", { "retry-after-ms": "40" }), reply({ text: "ok" }));
    const { run, events } = await s.runToEnd(worker, "hi");
    expect(run.status).toBe(RunStatus.COMPLETED);
    const retries = events.flatMap((e) => (e.kind.case === "retryScheduled" ? [e.kind.value] : []));
    expect(retries.map((r) => [r.runId, r.retry?.attempt, r.retry?.httpStatus])).toEqual([
      [run.runId, 1, 503],
      [run.runId, 2, 429],
    ]);
    expect(retries[0]?.retry?.reason).toContain("HTTP 503: overloaded");
    expect(retries[1]?.retry?.delayMs).toBeGreaterThanOrEqual(40);
    expect(run.retries).toBe(2);
    expect(run.lastRetry).toMatchObject({ attempt: 2, httpStatus: 429 });
    // The retry events arrive before the answer's text.
    const firstText = events.findIndex((e) => e.kind.case === "textDelta");
    const lastRetry = events.findLastIndex((e) => e.kind.case === "retryScheduled");
    expect(lastRetry).toBeLessThan(firstText);
  });

  it("retries after a Retry-After-Ms with a fraction of a millisecond, shown in whole milliseconds", async () => {
    s = await startOpenAIServer(protocol);
    const worker = await s.newWorker();
    s.fake.enqueue(errorReply(503, "overloaded", { "retry-after-ms": "30.5" }), reply({ text: "ok" }));
    const { run, events } = await s.runToEnd(worker, "hi");
    // Before, the retry's delay (a uint32) held 30.5: its event could not be encoded and the run failed INTERNAL.
    expect(run.status).toBe(RunStatus.COMPLETED);
    expect(run.lastRetry?.delayMs).toBe(31);
    expect(events.some((e) => e.kind.case === "retryScheduled" && e.kind.value.retry?.delayMs === 31)).toBe(true);
  });

  it("lists provider problems in ListDiagnostics, one per code with a count, until the provider works again", async () => {
    s = await startOpenAIServer(protocol, { retry: { baseDelayMs: 5, maxDelayMs: 20, budgetMs: 200 } });
    const worker = await s.newWorker();
    const diagnostics = async () => (await s?.clients.management.listDiagnostics({}))?.diagnostics ?? [];

    s.fake.enqueue(errorReply(401, "Incorrect API key provided"), errorReply(401, "Incorrect API key provided"));
    expect((await s.runToEnd(worker, "one")).run.error?.reason).toBe(ErrorReason.PROVIDER_AUTH_FAILED);
    expect((await s.runToEnd(worker, "two")).run.error?.reason).toBe(ErrorReason.PROVIDER_AUTH_FAILED);
    const [auth, ...none] = await diagnostics();
    expect(none).toEqual([]);
    expect(auth).toMatchObject({ code: "provider.auth_failed", severity: DiagnosticSeverity.ERROR, count: 2 });
    expect(auth?.lastSeen).toBeDefined();
    expect((await s.clients.management.getRuntime({})).runtime?.diagnosticCount).toBe(1);

    s.fake.setFallback(errorReply(503, "down for maintenance"));
    expect((await s.runToEnd(worker, "three")).run.error?.reason).toBe(ErrorReason.PROVIDER_UNAVAILABLE);
    expect((await diagnostics()).map((d) => [d.code, d.count])).toEqual([
      ["provider.unavailable", 1],
      ["provider.auth_failed", 2],
    ]);

    s.fake.enqueue(reply({ text: "back" }));
    expect((await s.runToEnd(worker, "four")).run.status).toBe(RunStatus.COMPLETED);
    expect(await diagnostics()).toEqual([]);

    // The provider dies: the cause survives into the run's error and the diagnostic.
    await s.fake.close();
    const dead = await s.runToEnd(worker, "five");
    expect(dead.run.error?.reason).toBe(ErrorReason.PROVIDER_UNAVAILABLE);
    expect(dead.run.error?.metadata).toMatchObject({ cause: "ECONNREFUSED" });
    const [died] = await diagnostics();
    expect(died).toMatchObject({ code: "provider.unavailable", count: 1 });
    expect(died?.message).toContain("ECONNREFUSED");
  });

  it("reports the engine's bounds in GetRuntime.limits", async () => {
    s = await startOpenAIServer(protocol, { streamIdleTimeoutMs: 45_000, maxAnswerBytes: 200_000, retry: { budgetMs: 20_000 } });
    const { runtime } = await s.clients.management.getRuntime({});
    expect(runtime?.limits).toMatchObject({ streamIdleTimeoutMs: 45_000, maxAnswerBytes: 200_000, retryBudgetMs: 20_000 });
  });

  it("records the splice of a cut answer in the transcript a reader sees", async () => {
    s = await startOpenAIServer(protocol);
    const worker = await s.newWorker();
    const full = "Rivers run to the sea and the sea is never full.";
    s.fake.enqueue(
      { kind: "stream", chunks: replyChunks({ text: full, pieceSize: 6 }), end: "cut", cutAfter: 4 },
      reply({ text: full.slice(18), pieceSize: 6 }),
    );
    await s.runToEnd(worker, "quote");
    const { entries } = await s.clients.observation.readTranscript({ worker: worker.ref });
    expect(entries.map((e) => e.content.case)).toEqual(["userMessage", "assistantMessage", "notice", "assistantMessage"]);
    const notice = entries[2]?.content;
    expect(notice?.case === "notice" && notice.value.code).toBe("answer.continued");
  });
});
