import { afterEach, describe, expect, it } from "vitest";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { StopReason } from "../../gen/worker_runtime/v1/run_pb.js";
import { CONTINUE_PROMPT } from "../../src/engine/model-turn.js";
import { retryAfterMs } from "../../src/engine/retry.js";
import { RunClosedError } from "../../src/runtime/execution-backend.js";
import { errorReply, reply, replyChunks } from "../support/openai-chunks.js";
import { RecordingSink } from "../support/recording-sink.js";
import { startHarness, TEST_KEY, type Harness } from "./harness.js";

describe("provider failures", () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  it("retries two 429s that carry Retry-After, then completes one run", async () => {
    h = await startHarness();
    h.fake.enqueue(
      errorReply(429, "Rate limit reached", { "retry-after": "0" }),
      errorReply(429, "Rate limit reached", { "retry-after-ms": "20" }),
      reply({ text: "finally" }),
    );
    const { outcome, sink } = await h.run({ input: "hi" });
    expect(outcome).toEqual({ kind: "completed", stopReason: StopReason.END_TURN });
    expect(h.fake.requests).toHaveLength(3);
    expect(sink.committed("assistantMessage").map((m) => m.text)).toEqual(["finally"]);
    expect(sink.turns).toBe(1);
  });

  it("gives up at once with RATE_LIMITED when Retry-After lies beyond the retry budget", async () => {
    h = await startHarness({ retry: { budgetMs: 2_000 }, random: () => 0 });
    h.fake.enqueue(errorReply(429, "slow down", { "retry-after": "30" }), reply({ text: "never" }));
    const { outcome } = await h.run({ input: "hi" });
    expect(outcome).toMatchObject({ kind: "failed", reason: ErrorReason.RATE_LIMITED });
    // Backoff alone (random = 0) would have retried immediately; the header was honoured instead.
    expect(h.fake.requests).toHaveLength(1);
  });

  it.each([
    ["retry-after", "0"],
    ["retry-after-ms", "0"],
  ])("still backs off when every 503 says %s: %s", async (header, value) => {
    h = await startHarness({ retry: { budgetMs: 500, baseDelayMs: 50, maxDelayMs: 100 }, random: () => 0 });
    h.fake.setFallback(errorReply(503, "overloaded", { [header]: value }));
    const { outcome } = await h.run({ input: "hi" });
    expect(outcome).toMatchObject({ kind: "failed", reason: ErrorReason.PROVIDER_UNAVAILABLE });
    // At least 50 ms apart within 500 ms: about ten requests, not a storm.
    expect(h.fake.requests.length).toBeGreaterThan(2);
    expect(h.fake.requests.length).toBeLessThanOrEqual(11);
  });

  it("fails a 401 with PROVIDER_AUTH_FAILED after exactly one request, never echoing the key", async () => {
    h = await startHarness();
    h.fake.enqueue(errorReply(401, `Incorrect API key provided: ${TEST_KEY}. Find your key at ...`));
    const { outcome } = await h.run({ input: "hi" });
    expect(outcome).toMatchObject({ kind: "failed", reason: ErrorReason.PROVIDER_AUTH_FAILED });
    expect(h.fake.requests).toHaveLength(1);
    const message = outcome.kind === "failed" ? outcome.message : "";
    expect(message).toContain("401");
    expect(message).not.toContain(TEST_KEY);
    expect(message).not.toMatch(/sk-test/);
  });

  it.each([
    [400, ErrorReason.PROVIDER_REJECTED],
    [403, ErrorReason.PROVIDER_AUTH_FAILED],
    [404, ErrorReason.PROVIDER_REJECTED],
    [422, ErrorReason.PROVIDER_REJECTED],
  ])("fails HTTP %i at once with its typed reason", async (status, reason) => {
    h = await startHarness();
    h.fake.enqueue(errorReply(status, "nope"));
    const { outcome } = await h.run({ input: "hi" });
    expect(outcome).toMatchObject({ kind: "failed", reason });
    expect(h.fake.requests).toHaveLength(1);
  });

  it("retries 5xx until the budget ends, then fails PROVIDER_UNAVAILABLE", async () => {
    h = await startHarness({ retry: { budgetMs: 300, baseDelayMs: 20, maxDelayMs: 50 } });
    h.fake.setFallback(errorReply(503, "overloaded"));
    const { outcome } = await h.run({ input: "hi" });
    expect(outcome).toMatchObject({ kind: "failed", reason: ErrorReason.PROVIDER_UNAVAILABLE });
    expect(outcome.kind === "failed" && outcome.message).toContain("503");
    expect(h.fake.requests.length).toBeGreaterThan(2);
  });

  it.each([408, 409, 500, 502])("retries HTTP %i", async (status) => {
    h = await startHarness();
    h.fake.enqueue(errorReply(status, "transient"), reply({ text: "ok" }));
    const { outcome } = await h.run({ input: "hi" });
    expect(outcome.kind).toBe("completed");
    expect(h.fake.requests).toHaveLength(2);
  });

  it("retries a connection reset before any response", async () => {
    h = await startHarness();
    h.fake.enqueue({ kind: "reset" }, reply({ text: "after reset" }));
    const { outcome, sink } = await h.run({ input: "hi" });
    expect(outcome.kind).toBe("completed");
    expect(sink.committed("assistantMessage").map((m) => m.text)).toEqual(["after reset"]);
  });

  it("times out a provider that never answers, retries, and fails PROVIDER_UNAVAILABLE within the budget", async () => {
    h = await startHarness({ requestTimeoutMs: 100, retry: { budgetMs: 400, baseDelayMs: 10, maxDelayMs: 20 } });
    h.fake.setFallback({ kind: "stall" });
    const { outcome } = await h.run({ input: "hi" });
    expect(outcome).toMatchObject({ kind: "failed", reason: ErrorReason.PROVIDER_UNAVAILABLE });
    expect(outcome.kind === "failed" && outcome.message).toMatch(/timed out/i);
    expect(h.fake.requests.length).toBeGreaterThan(1);
    // Every timed-out attempt's connection was closed by the client.
    await h.fake.waitForClientClose(0);
  });

  it("cuts a retry's request timeout to what is left of the retry budget", async () => {
    h = await startHarness({ requestTimeoutMs: 10_000, retry: { budgetMs: 300, baseDelayMs: 10, maxDelayMs: 20 } });
    h.fake.enqueue(errorReply(503, "overloaded"));
    h.fake.setFallback({ kind: "stall" });
    const { outcome } = await h.run({ input: "hi" });
    expect(outcome).toMatchObject({ kind: "failed", reason: ErrorReason.PROVIDER_UNAVAILABLE });
    // The provider's last real error: the stalled retry was cut short by the budget. With the
    // full 10 s request timeout it would have ended in its own timeout error instead.
    expect(outcome.kind === "failed" && outcome.message).toContain("HTTP 503");
  }, 15_000);

  it("continues an answer whose stream was cut, with no duplicated text", async () => {
    h = await startHarness();
    const full = "The quick brown fox jumps over the lazy dog.";
    // Role chunk + 3 pieces of 4 characters: "The quick br".
    h.fake.enqueue(
      { kind: "stream", chunks: replyChunks({ text: full, pieceSize: 4 }), end: "cut", cutAfter: 4 },
      reply({ text: "own fox jumps over the lazy dog.", usage: { prompt: 30, completion: 9 } }),
    );
    const { outcome, sink } = await h.run({ input: "say it" });
    expect(outcome).toEqual({ kind: "completed", stopReason: StopReason.END_TURN });
    const pieces = sink.committed("assistantMessage").map((m) => m.text);
    expect(pieces).toEqual(["The quick br", "own fox jumps over the lazy dog."]);
    expect(pieces.join("")).toBe(full);
    expect(sink.streamedText()).toBe(full);
    // The continuation request carried the partial answer and asked to go on.
    expect(h.fake.requests[1]?.body.messages.slice(-2)).toEqual([
      { role: "assistant", content: "The quick br" },
      { role: "user", content: CONTINUE_PROMPT },
    ]);
  });

  it("records the splice of a cut answer: a notice at the cut with what was asked, replayed in later history", async () => {
    h = await startHarness();
    const full = "The quick brown fox jumps over the lazy dog.";
    h.fake.enqueue(
      { kind: "stream", chunks: replyChunks({ text: full, pieceSize: 4 }), end: "cut", cutAfter: 4 },
      reply({ text: "own fox jumps over the lazy dog.", usage: { prompt: 30, completion: 9 } }),
      reply({ text: "Yes." }),
    );
    const sink = new RecordingSink("r1");
    await h.run({ input: "say it", sink, runId: "r1" });
    expect(sink.transcript.map((e) => e.content.case)).toEqual(["userMessage", "assistantMessage", "notice", "assistantMessage"]);
    const notice = sink.committed("notice")[0];
    expect(notice?.code).toBe("answer.continued");
    expect(notice?.message).toContain("cut after 12 bytes");
    expect(notice?.message).toContain(CONTINUE_PROMPT);
    // The cut response brought no usage; its tokens are estimated rather than lost.
    expect(sink.usage.outputTokens).toBeGreaterThan(9n);
    expect(sink.usage.inputTokens).toBeGreaterThan(30n);
    // ... and its request is counted as one whose usage the provider did not report.
    expect([sink.usage.modelRequests, sink.usage.unreportedRequests]).toEqual([2n, 1n]);

    await h.run({ input: "again?", sink, runId: "r2" });
    expect(h.fake.requests[2]?.body.messages.slice(-4)).toEqual([
      { role: "assistant", content: "The quick br" },
      { role: "user", content: CONTINUE_PROMPT },
      { role: "assistant", content: "own fox jumps over the lazy dog." },
      { role: "user", content: "again?" },
    ]);
  });

  it("discards the partial tool call of a cut stream so watchers drop it", async () => {
    h = await startHarness();
    // Role chunk, one text piece, the tool call's header and one argument piece, then the cut.
    const cutReply = replyChunks({
      text: "Let",
      pieceSize: 4,
      toolCalls: [{ id: "call_1", name: "read_file", arguments: '{"path":"a.txt"}' }],
    });
    h.fake.enqueue({ kind: "stream", chunks: cutReply, end: "cut", cutAfter: 4 }, reply({ text: " me answer." }));
    const { outcome, sink } = await h.run({ input: "go" });
    expect(outcome.kind).toBe("completed");
    const partialCall = sink.events.find((e) => e.type === "tool_call");
    expect(partialCall).toBeDefined();
    const discarded = sink.events.filter((e) => e.type === "discard").map((e) => (e as { blockId: string }).blockId);
    expect(discarded).toEqual([(partialCall as { blockId: string }).blockId]);
    expect(sink.committed("toolCall")).toEqual([]);
  });

  it("drops the repeat when a continued answer restarts from the top", async () => {
    h = await startHarness();
    const full = "One two three four five six.";
    h.fake.enqueue(
      { kind: "stream", chunks: replyChunks({ text: full, pieceSize: 5 }), end: "cut", cutAfter: 3 },
      reply({ text: full, pieceSize: 3 }),
    );
    const { outcome, sink } = await h.run({ input: "count" });
    expect(outcome.kind).toBe("completed");
    expect(
      sink
        .committed("assistantMessage")
        .map((m) => m.text)
        .join(""),
    ).toBe(full);
    expect(sink.streamedText()).toBe(full);
  });

  it("does not commit a restarted continuation's held-back repeat when that stream is cut too", async () => {
    h = await startHarness({ maxStreamResumes: 2 });
    const full = "Hello world, this is a test.";
    h.fake.enqueue(
      // Role chunk + 4 pieces of 5: "Hello world, this is".
      { kind: "stream", chunks: replyChunks({ text: full, pieceSize: 5 }), end: "cut", cutAfter: 5 },
      // The continuation restarts from the top and is cut after "Hello worl", still held back.
      { kind: "stream", chunks: replyChunks({ text: full, pieceSize: 5 }), end: "cut", cutAfter: 3 },
      reply({ text: " a test." }),
    );
    const { outcome, sink } = await h.run({ input: "say it" });
    expect(outcome.kind).toBe("completed");
    expect(sink.committed("assistantMessage").map((m) => m.text)).toEqual(["Hello world, this is", " a test."]);
    expect(sink.streamedText()).toBe(full);
    expect(h.fake.requests[2]?.body.messages.at(-2)).toEqual({ role: "assistant", content: "Hello world, this is" });
  });

  it("discards reasoning cut before any answer text instead of committing it twice", async () => {
    h = await startHarness();
    const reasoning = "Let me think about this.";
    h.fake.enqueue(
      // Role chunk + 3 reasoning pieces of 4: "Let me think".
      { kind: "stream", chunks: replyChunks({ reasoning, text: "Answer.", pieceSize: 4 }), end: "cut", cutAfter: 4 },
      reply({ reasoning, text: "Answer." }),
    );
    const { outcome, sink } = await h.run({ input: "think" });
    expect(outcome.kind).toBe("completed");
    expect(sink.committed("reasoning").map((r) => r.text)).toEqual([reasoning]);
    expect(sink.committed("assistantMessage").map((m) => m.text)).toEqual(["Answer."]);
    const firstBlock = sink.events.find((e) => e.type === "reasoning");
    expect(sink.events.filter((e) => e.type === "discard")).toEqual([{ type: "discard", blockId: firstBlock?.blockId }]);
  });

  it("fails with the typed reason when the provider sends an error object inside the stream", async () => {
    h = await startHarness();
    const chunks = replyChunks({ text: "Hello there", pieceSize: 6 }).slice(0, 2);
    chunks.push({ error: { message: "This model's maximum context length is 4096 tokens", type: "BadRequestError", code: 400 } });
    h.fake.enqueue({ kind: "stream", chunks }, reply({ text: "never" }));
    const { outcome, sink } = await h.run({ input: "go" });
    expect(outcome).toMatchObject({ kind: "failed", reason: ErrorReason.PROVIDER_REJECTED });
    expect(outcome.kind === "failed" && outcome.message).toContain("maximum context length");
    expect(h.fake.requests).toHaveLength(1);
    // What arrived before the error stays committed.
    expect(sink.committed("assistantMessage").map((m) => m.text)).toEqual(["Hello "]);
  });

  it("resumes after a transient error object inside the stream", async () => {
    h = await startHarness();
    const chunks = replyChunks({ text: "Hello there", pieceSize: 6 }).slice(0, 2);
    chunks.push({ error: { message: "The server had an error while processing your request.", type: "server_error" } });
    h.fake.enqueue({ kind: "stream", chunks }, reply({ text: "there" }));
    const { outcome, sink } = await h.run({ input: "go" });
    expect(outcome.kind).toBe("completed");
    expect(sink.committed("assistantMessage").map((m) => m.text)).toEqual(["Hello ", "there"]);
  });

  it("resumes after a transient error object even when [DONE] came in the same read", async () => {
    h = await startHarness();
    const events = replyChunks({ text: "Hello there", pieceSize: 6 })
      .slice(0, 2)
      .map((chunk) => `data: ${JSON.stringify(chunk)}\n\n`);
    const error = { error: { message: "The server had an error while processing your request.", type: "server_error" } };
    // The error and [DONE] in one write: the parser has read [DONE] by the time the error payload is handled.
    h.fake.enqueue(
      { kind: "raw", writes: [events.join(""), `data: ${JSON.stringify(error)}\n\ndata: [DONE]\n\n`] },
      reply({ text: "there" }),
    );
    const { outcome, sink } = await h.run({ input: "go" });
    expect(outcome.kind).toBe("completed");
    expect(h.fake.requests).toHaveLength(2);
    expect(sink.committed("assistantMessage").map((m) => m.text)).toEqual(["Hello ", "there"]);
  });

  it("lets a sink error propagate instead of treating it as a cut stream", async () => {
    h = await startHarness();
    class ClosingSink extends RecordingSink {
      override textDelta(): void {
        throw new RunClosedError("run has ended");
      }
    }
    h.fake.enqueue(reply({ text: "Hello" }), reply({ text: "again" }));
    await expect(h.run({ input: "go", sink: new ClosingSink("closing") })).rejects.toBeInstanceOf(RunClosedError);
    expect(h.fake.requests).toHaveLength(1);
  });

  it("fails LIMIT_EXCEEDED when one turn's answer outgrows maxAnswerBytes, stopping the stream", async () => {
    h = await startHarness({ maxAnswerBytes: 100 });
    h.fake.enqueue({ kind: "stream", chunks: replyChunks({ text: "blah ".repeat(200), pieceSize: 10 }), delayMs: 2 });
    const { outcome, sink } = await h.run({ input: "go on forever" });
    expect(outcome).toMatchObject({ kind: "failed", reason: ErrorReason.LIMIT_EXCEEDED });
    expect(outcome.kind === "failed" && outcome.message).toContain("exceeded 100 bytes");
    expect(
      sink
        .committed("assistantMessage")
        .map((m) => m.text)
        .join("").length,
    ).toBeLessThanOrEqual(110);
    await h.fake.waitForClientClose(0);
  });

  it("streams and commits nothing past maxAnswerBytes: the crossing chunk is cut at the cap on a character boundary", async () => {
    // 2 + 2 × 100 bytes; the cap (101) falls inside the second piece, in the middle of an "é".
    h = await startHarness({ maxAnswerBytes: 101 });
    h.fake.enqueue(reply({ reasoning: "ab", text: "é".repeat(100), pieceSize: 30 }));
    const { outcome, sink } = await h.run({ input: "go on" });
    expect(outcome).toMatchObject({ kind: "failed", reason: ErrorReason.LIMIT_EXCEEDED });
    const streamed = sink.events.map((e) => (e.type === "text" || e.type === "reasoning" ? e.text : "")).join("");
    expect(streamed).toBe(`ab${"é".repeat(49)}`);
    expect(sink.committed("reasoning").map((r) => r.text)).toEqual(["ab"]);
    expect(sink.committed("assistantMessage").map((m) => m.text)).toEqual(["é".repeat(49)]);
  });

  it("fails LIMIT_EXCEEDED when one turn's tool-call arguments outgrow maxToolArgumentsBytes, running nothing", async () => {
    h = await startHarness({ maxToolArgumentsBytes: 100 });
    const args = JSON.stringify({ path: "big.txt", content: "x".repeat(500) });
    h.fake.enqueue(reply({ toolCalls: [{ id: "w1", name: "write_file", arguments: args }] }), reply({ text: "never" }));
    const { outcome, sink } = await h.run({ input: "write", capabilities: ["fs.write"] });
    expect(outcome).toMatchObject({ kind: "failed", reason: ErrorReason.LIMIT_EXCEEDED });
    expect(sink.committed("toolCall")).toEqual([]);
    expect(h.fake.requests).toHaveLength(1);
  });

  it("fails LIMIT_EXCEEDED when one turn makes more tool calls than maxToolCallsPerTurn, running nothing", async () => {
    // Empty arguments cost nothing against maxToolArgumentsBytes: the count is what must be bounded.
    const calls = (n: number) => Array.from({ length: n }, (_, i) => ({ id: `c${i}`, name: "list_files", arguments: "" }));
    h = await startHarness();
    h.fake.enqueue(reply({ toolCalls: calls(500) }), reply({ text: "never" }));
    const { outcome, sink } = await h.run({ input: "list", capabilities: ["fs.read"] });
    expect(outcome).toMatchObject({ kind: "failed", reason: ErrorReason.LIMIT_EXCEEDED });
    expect(outcome.kind === "failed" && outcome.message).toContain("more than 128 tool calls");
    expect(sink.committed("toolCall")).toEqual([]);
    expect(sink.committed("toolResult")).toEqual([]);
    expect(h.fake.requests).toHaveLength(1);
    await h.close();
    // The bound is a setting; a turn at it runs every call.
    h = await startHarness({ maxToolCallsPerTurn: 3 });
    h.fake.enqueue(reply({ toolCalls: calls(3) }), reply({ text: "listed" }), reply({ toolCalls: calls(4) }));
    const within = await h.run({ input: "list", capabilities: ["fs.read"] });
    expect(within.outcome.kind).toBe("completed");
    expect(within.sink.committed("toolResult")).toHaveLength(3);
    const over = await h.run({ input: "list more", capabilities: ["fs.read"] });
    expect(over.outcome).toMatchObject({ kind: "failed", reason: ErrorReason.LIMIT_EXCEEDED });
  });

  it("fails PROVIDER_UNAVAILABLE when the stream keeps being cut", async () => {
    h = await startHarness({ maxStreamResumes: 2 });
    const cut = (text: string) => ({
      kind: "stream" as const,
      chunks: replyChunks({ text, pieceSize: 2 }),
      end: "cut" as const,
      cutAfter: 2,
    });
    h.fake.enqueue(cut("ab--"), cut("cd--"), cut("ef--"), reply({ text: "never" }));
    const { outcome, sink } = await h.run({ input: "go" });
    expect(outcome).toMatchObject({ kind: "failed", reason: ErrorReason.PROVIDER_UNAVAILABLE });
    expect(h.fake.requests).toHaveLength(3);
    // What was said before each cut stays committed.
    expect(sink.committed("assistantMessage").map((m) => m.text)).toEqual(["ab", "cd", "ef"]);
  });

  it("treats a stream that goes silent past the idle timeout as cut", async () => {
    h = await startHarness({ streamIdleTimeoutMs: 100 });
    // Role chunk and "Hello ", then the connection stays open and silent.
    const silent = replyChunks({ text: "Hello there", pieceSize: 6 }).slice(0, 2);
    h.fake.enqueue({ kind: "stream", chunks: silent, end: "hang" }, reply({ text: "there" }));
    const { outcome, sink } = await h.run({ input: "greet" });
    expect(outcome.kind).toBe("completed");
    expect(h.fake.requests).toHaveLength(2);
    expect(sink.committed("assistantMessage").map((m) => m.text)).toEqual(["Hello ", "there"]);
    // The silent response's connection is closed, not left open beside the continuation's.
    await h.fake.waitForClientClose(0);
    expect(h.fake.requests[1]?.connection).not.toBe(h.fake.requests[0]?.connection);
  });
});

describe("a provider's keep-alive comments", () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close();
  });

  it("are not silence: a model slow to its first token is waited for, not cut and asked again", async () => {
    h = await startHarness({ streamIdleTimeoutMs: 200 });
    // As OpenRouter does while a model thinks: comment lines for well past the idle timeout, then the answer.
    const answer = replyChunks({ text: "thought it over", pieceSize: 5 }).map((chunk) => `data: ${JSON.stringify(chunk)}\n\n`);
    const comments = Array.from({ length: 12 }, () => ": OPENROUTER PROCESSING\n\n");
    h.fake.enqueue({ kind: "raw", writes: [...comments, ...answer, "data: [DONE]\n\n"], delayMs: 50 });
    const { outcome, sink } = await h.run({ input: "think" });
    expect(outcome.kind).toBe("completed");
    expect(h.fake.requests).toHaveLength(1);
    expect(sink.committed("assistantMessage").map((m) => m.text)).toEqual(["thought it over"]);
  });

  it("do not keep a stream that then goes silent from being cut at the idle timeout", async () => {
    h = await startHarness({ streamIdleTimeoutMs: 200 });
    h.fake.enqueue(
      { kind: "raw", writes: [": still here\n\n", ": still here\n\n"], delayMs: 50, end: "hang" },
      reply({ text: "second try" }),
    );
    const { outcome, sink } = await h.run({ input: "think" });
    expect(outcome.kind).toBe("completed");
    expect(h.fake.requests).toHaveLength(2);
    expect(sink.committed("assistantMessage").map((m) => m.text)).toEqual(["second try"]);
  });
});

describe("retryAfterMs", () => {
  it("reads retry-after-ms, seconds and HTTP dates, preferring retry-after-ms", () => {
    const now = Date.parse("2025-01-01T00:00:00Z");
    expect(retryAfterMs(new Headers({ "retry-after-ms": "250", "retry-after": "9" }), now)).toBe(250);
    expect(retryAfterMs(new Headers({ "retry-after": "3" }), now)).toBe(3000);
    // Whole milliseconds, rounded up: never sooner than asked.
    expect(retryAfterMs(new Headers({ "retry-after-ms": "250.2" }), now)).toBe(251);
    expect(retryAfterMs(new Headers({ "retry-after": "0.0005" }), now)).toBe(1);
    expect(retryAfterMs(new Headers({ "retry-after": "Wed, 01 Jan 2025 00:00:05 GMT" }), now)).toBe(5000);
    expect(retryAfterMs(new Headers({ "retry-after": "soon" }), now)).toBeUndefined();
    expect(retryAfterMs(new Headers(), now)).toBeUndefined();
  });
});
