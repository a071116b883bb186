import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { StopReason } from "../../gen/worker_runtime/v1/run_pb.js";
import { DiagnosticLog } from "../../src/runtime/diagnostics.js";
import { chunk, reply, sseEvent } from "../support/openai-chunks.js";
import { recordingLogger } from "../support/recording-logger.js";
import { startHarness, type Harness } from "./harness.js";

/**
 * Chunk shapes that particular OpenAI-compatible servers send (Azure,
 * Mistral, llama.cpp, LiteLLM, Groq, OpenAI's own refusals), each sent
 * exactly as the wire carries it. stream-edge-cases.test.ts covers framing
 * and the shapes every server shares.
 */
describe("what compatible providers send", () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  it("takes Azure's shapes: a first chunk of prompt filter results with no choices, role on every delta, null content, no id or model", async () => {
    h = await startHarness();
    const usage = {
      prompt_tokens: 11,
      completion_tokens: 3,
      total_tokens: 14,
      prompt_tokens_details: { cached_tokens: 4, audio_tokens: 0 },
      completion_tokens_details: { reasoning_tokens: 1, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
    };
    h.fake.enqueue({
      kind: "raw",
      writes: [
        sseEvent({ id: "", object: "", created: 0, model: "", prompt_filter_results: [{ prompt_index: 0 }], choices: [] }),
        sseEvent({ choices: [{ index: 0, delta: { role: "assistant", content: null }, finish_reason: null }] }),
        sseEvent({ choices: [{ index: 0, delta: { role: "assistant", content: "Hel" }, finish_reason: null }], usage: null }),
        sseEvent({ choices: [] }),
        sseEvent({ choices: [{ index: 0, delta: {}, finish_reason: null, content_filter_results: {} }] }),
        // The finish reason and usage arrive with the last piece of text.
        sseEvent({ choices: [{ index: 0, delta: { role: "assistant", content: "lo" }, finish_reason: "stop" }], usage }),
        "data: [DONE]\n\n",
      ],
    });
    const { outcome, sink } = await h.run({ input: "go" });
    expect(outcome).toEqual({ kind: "completed", stopReason: StopReason.END_TURN });
    expect(sink.committed("assistantMessage").map((m) => m.text)).toEqual(["Hello"]);
    expect([sink.usage.inputTokens, sink.usage.outputTokens, sink.usage.cachedInputTokens, sink.usage.reasoningTokens]).toEqual([
      11n,
      3n,
      4n,
      1n,
    ]);
  });
  it("takes usage that comes after the finish reason, and a stream that ends without [DONE]", async () => {
    h = await startHarness();
    const usage = { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7, prompt_tokens_details: null, completion_tokens_details: null };
    h.fake.enqueue({
      kind: "raw",
      writes: [sseEvent(chunk({ content: "ok" })), sseEvent(chunk({}, "stop")), sseEvent({ choices: [], usage })],
    });
    const { outcome, sink } = await h.run({ input: "go" });
    expect(outcome.kind).toBe("completed");
    expect(h.fake.requests).toHaveLength(1);
    expect(sink.committed("assistantMessage").map((m) => m.text)).toEqual(["ok"]);
    expect([sink.usage.inputTokens, sink.usage.outputTokens, sink.usage.cachedInputTokens]).toEqual([5n, 2n, 0n]);
  });
  it("does not fail a run over token counts that are not whole numbers", async () => {
    h = await startHarness();
    const usage = { prompt_tokens: 12.5, completion_tokens: "3", total_tokens: null, prompt_tokens_details: { cached_tokens: "many" } };
    h.fake.enqueue({
      kind: "raw",
      writes: [sseEvent(chunk({ content: "ok" }, "stop")), sseEvent({ choices: [], usage }), "data: [DONE]\n\n"],
    });
    const { outcome, sink } = await h.run({ input: "go" });
    expect(outcome.kind).toBe("completed");
    expect(sink.committed("assistantMessage").map((m) => m.text)).toEqual(["ok"]);
    expect([sink.usage.inputTokens, sink.usage.outputTokens, sink.usage.cachedInputTokens]).toEqual([13n, 3n, 0n]);
  });

  it("keeps OpenAI's refusal as the assistant's answer, streamed and replayed", async () => {
    h = await startHarness();
    h.fake.enqueue(
      {
        kind: "stream",
        chunks: [
          chunk({ role: "assistant", content: null, refusal: "" }),
          chunk({ refusal: "I'm sorry, " }),
          chunk({ refusal: "I can't help with that." }),
          chunk({}, "stop"),
        ],
      },
      reply({ text: "ok" }),
    );
    const { outcome, sink } = await h.run({ input: "do something bad" });
    expect(outcome).toEqual({ kind: "completed", stopReason: StopReason.END_TURN });
    expect(sink.committed("assistantMessage").map((m) => m.text)).toEqual(["I'm sorry, I can't help with that."]);
    expect(sink.streamedText()).toBe("I'm sorry, I can't help with that.");
    await h.run({ input: "why?", sink });
    expect(h.fake.requests[1]?.body.messages.slice(-2)).toEqual([
      { role: "assistant", content: "I'm sorry, I can't help with that." },
      { role: "user", content: "why?" },
    ]);
  });

  it("reads Mistral's content parts: thinking parts as reasoning, text parts as the answer", async () => {
    h = await startHarness();
    const thinking = (text: string): object => ({ type: "thinking", thinking: [{ type: "text", text }] });
    h.fake.enqueue({
      kind: "stream",
      chunks: [
        chunk({ role: "assistant", content: "" }),
        chunk({ content: [thinking("Let me ")] }),
        chunk({ content: [thinking("think.")] }),
        chunk({ content: [{ type: "text", text: "The answer" }] }),
        chunk({ content: " is 42." }),
        chunk({}, "stop"),
      ],
    });
    const { outcome, sink } = await h.run({ input: "answer?" });
    expect(outcome.kind).toBe("completed");
    expect(sink.committed("reasoning").map((r) => r.text)).toEqual(["Let me think."]);
    expect(sink.committed("assistantMessage").map((m) => m.text)).toEqual(["The answer is 42."]);
  });

  it("keeps DeepSeek's reasoning_content in the transcript but never sends it back, which DeepSeek refuses", async () => {
    h = await startHarness();
    h.fake.enqueue(reply({ reasoning: "Six times seven.", text: "42" }), reply({ text: "Sure." }));
    const first = await h.run({ input: "answer?" });
    expect(first.sink.committed("reasoning").map((r) => r.text)).toEqual(["Six times seven."]);
    await h.run({ input: "thanks", sink: first.sink });
    const sent = h.fake.requests[1]?.body.messages ?? [];
    expect(sent.slice(-2)).toEqual([
      { role: "assistant", content: "42" },
      { role: "user", content: "thanks" },
    ]);
    expect(JSON.stringify(sent)).not.toContain("Six times seven");
  });

  it("assembles tool calls whose index comes only first, whose id repeats on every piece, or that have no id, no type and empty arguments", async () => {
    h = await startHarness();
    await writeFile(join(h.workspace, "a.txt"), "alpha");
    h.fake.enqueue(
      {
        kind: "stream",
        chunks: [
          chunk({ role: "assistant", content: null }),
          // llama.cpp style: index and id on the first piece only.
          chunk({ tool_calls: [{ index: 0, id: "call_a", type: "function", function: { name: "read_file", arguments: "" } }] }),
          chunk({ tool_calls: [{ function: { arguments: '{"path":' } }] }),
          chunk({ tool_calls: [{ function: { arguments: '"a.txt"}' } }] }),
          // The id and name repeated on every piece (some proxies).
          chunk({ tool_calls: [{ index: 1, id: "call_b", type: "function", function: { name: "list_files", arguments: '{"pa' } }] }),
          chunk({ tool_calls: [{ index: 1, id: "call_b", type: "function", function: { name: "list_files", arguments: 'th":"."}' } }] }),
          // No id, no type, and arguments "" (meaning {}).
          chunk({ tool_calls: [{ index: 2, function: { name: "list_files", arguments: "" } }] }),
          chunk({}, "tool_calls"),
        ],
      },
      reply({ text: "done" }),
    );
    const { outcome, sink } = await h.run({ input: "look", capabilities: ["fs.read"] });
    expect(outcome.kind).toBe("completed");
    const calls = sink.committed("toolCall");
    expect(calls.map((c) => [c.toolName, c.argumentsJson])).toEqual([
      ["read_file", '{"path":"a.txt"}'],
      ["list_files", '{"path":"."}'],
      ["list_files", ""],
    ]);
    expect(calls.slice(0, 2).map((c) => c.toolCallId)).toEqual(["call_a", "call_b"]);
    expect(calls[2]?.toolCallId).toMatch(/^call_/);
    const results = sink.committed("toolResult");
    expect(results.map((r) => r.isError)).toEqual([false, false, false]);
    expect(results[0]?.output).toBe("alpha");
    expect(results[2]?.output).toBe(results[1]?.output);
    // Replayed with an id, a type and JSON arguments every server accepts.
    const sent = h.fake.requests[1]?.body.messages.find((m) => m.tool_calls)?.tool_calls;
    expect(sent?.map((c) => [c.type, c.function.arguments])).toEqual([
      ["function", '{"path":"a.txt"}'],
      ["function", '{"path":"."}'],
      ["function", "{}"],
    ]);
  });
  it("does not crash on tool-call arguments sent as a JSON object rather than a string", async () => {
    h = await startHarness();
    h.fake.enqueue(
      {
        kind: "stream",
        chunks: [
          chunk({ tool_calls: [{ index: 0, id: "c1", function: { name: "list_files", arguments: { path: "." } } }] }),
          chunk({}, "tool_calls"),
        ],
      },
      reply({ text: "done" }),
    );
    const { outcome, sink } = await h.run({ input: "look", capabilities: ["fs.read"] });
    expect(outcome.kind).toBe("completed");
    expect(sink.committed("toolCall").map((c) => JSON.parse(c.argumentsJson))).toEqual([{ path: "." }]);
    expect(sink.committed("toolResult")[0]?.isError).toBe(false);
  });

  it("answers with the text of a tool_calls finish that brought no tool call, and logs a warning naming the finish reason", async () => {
    h = await startHarness();
    const logger = recordingLogger();
    h.backend.attach?.({ diagnostics: new DiagnosticLog(10, () => new Date()), logger });
    h.fake.enqueue({ kind: "stream", chunks: [chunk({ content: "Let me check." }), chunk({}, "tool_calls")] });
    const { outcome, sink } = await h.run({ input: "go" });
    expect(outcome).toEqual({ kind: "completed", stopReason: StopReason.END_TURN });
    expect(h.fake.requests).toHaveLength(1);
    expect(sink.committed("assistantMessage").map((m) => m.text)).toEqual(["Let me check."]);
    const warned = logger.lines.filter((l) => l.level === "warn");
    expect(warned).toHaveLength(1);
    expect(warned[0]?.fields).toMatchObject({ finish_reason: "tool_calls", run_id: sink.runId });
  });

  it.each([
    ["nothing at all", [chunk({ role: "assistant", content: "" })]],
    ["only reasoning", [chunk({ reasoning_content: "I should call a tool." })]],
  ])("fails PROVIDER_UNAVAILABLE, without asking again, on a tool_calls finish that brought no tool call and %s", async (_, chunks) => {
    h = await startHarness();
    h.fake.enqueue({ kind: "stream", chunks: [...chunks, chunk({}, "tool_calls")] }, reply({ text: "never asked" }));
    const { outcome, sink } = await h.run({ input: "go" });
    expect(outcome).toMatchObject({ kind: "failed", reason: ErrorReason.PROVIDER_UNAVAILABLE });
    expect(outcome.kind === "failed" && outcome.message).toContain('finish reason "tool_calls"');
    expect(outcome.kind === "failed" && outcome.metadata).toMatchObject({ finish_reason: "tool_calls" });
    expect(h.fake.requests).toHaveLength(1);
    expect(sink.committed("assistantMessage")).toEqual([]);
  });

  it.each([
    ["function_call", "(legacy)"],
    ["eos", "(unknown)"],
  ])("ends the run on finish reason %s %s, keeping its text", async (finish) => {
    h = await startHarness();
    h.fake.enqueue({ kind: "stream", chunks: [chunk({ content: "Let me check." }), chunk({}, finish)] });
    const { outcome, sink } = await h.run({ input: "go" });
    expect(outcome).toEqual({ kind: "completed", stopReason: StopReason.END_TURN });
    expect(h.fake.requests).toHaveLength(1);
    expect(sink.committed("assistantMessage").map((m) => m.text)).toEqual(["Let me check."]);
  });

  it("fails RATE_LIMITED on Groq's in-stream rate limit, which names it only in `code`", async () => {
    h = await startHarness({ retry: { budgetMs: 2_000, baseDelayMs: 10, maxDelayMs: 10 } });
    const limited = { error: { message: "Rate limit reached for model", type: "tokens", code: "rate_limit_exceeded" } };
    h.fake.setFallback({ kind: "raw", writes: [sseEvent(limited)], end: "hang" });
    const { outcome } = await h.run({ input: "go" });
    expect(outcome).toMatchObject({ kind: "failed", reason: ErrorReason.RATE_LIMITED });
    expect(outcome.kind === "failed" && outcome.message).toContain("Rate limit reached for model");
  });

  it.each([
    ["error", "(OpenRouter: the upstream model failed mid-answer)"],
    ["abort", "(vLLM: the server aborted the request)"],
  ])("takes finish reason %s %s for a cut, and continues the answer", async (finish) => {
    h = await startHarness();
    h.fake.enqueue({ kind: "stream", chunks: [chunk({ content: "Hello" }), chunk({}, finish)] }, reply({ text: " world" }));
    const { outcome, sink } = await h.run({ input: "go" });
    expect(outcome).toEqual({ kind: "completed", stopReason: StopReason.END_TURN });
    expect(h.fake.requests).toHaveLength(2);
    expect(sink.committed("assistantMessage").map((m) => m.text)).toEqual(["Hello", " world"]);
  });

  it("reads `data:` with no space, and a last event with no blank line (or no newline) before the end of the body", async () => {
    h = await startHarness();
    h.fake.enqueue(
      {
        kind: "raw",
        writes: [
          `data:${JSON.stringify(chunk({ content: "Hello" }))}\n\n`,
          `data:${JSON.stringify(chunk({ content: " world" }, "stop"))}\n`,
        ],
      },
      { kind: "raw", writes: [sseEvent(chunk({ content: "Once" })), `data: ${JSON.stringify(chunk({ content: " more" }, "stop"))}`] },
    );
    const { outcome, sink } = await h.run({ input: "go" });
    expect(outcome).toEqual({ kind: "completed", stopReason: StopReason.END_TURN });
    expect(sink.committed("assistantMessage").map((m) => m.text)).toEqual(["Hello world"]);
    const again = await h.run({ input: "again" });
    expect(again.sink.committed("assistantMessage").map((m) => m.text)).toEqual(["Once more"]);
    expect(h.fake.requests).toHaveLength(2);
  });

  it("takes a body that ends cleanly inside an event's JSON for a cut, and continues the answer", async () => {
    h = await startHarness();
    const last = JSON.stringify(chunk({ content: " world" }, "stop"));
    h.fake.enqueue(
      { kind: "raw", writes: [sseEvent(chunk({ content: "Hello" })), `data: ${last.slice(0, 30)}`] },
      reply({ text: " world" }),
    );
    const { outcome, sink } = await h.run({ input: "go" });
    expect(outcome.kind).toBe("completed");
    expect(h.fake.requests).toHaveLength(2);
    expect(sink.committed("assistantMessage").map((m) => m.text)).toEqual(["Hello", " world"]);
  });

  it("fails or retries with the provider's message, bounded, when a stream's error is a bare string or very long", async () => {
    h = await startHarness();
    const long = "x".repeat(100_000);
    h.fake.enqueue(
      // LiteLLM and some proxies send the error as a string; the first retry must say what it was.
      {
        kind: "raw",
        writes: [sseEvent(chunk({ content: "Hi" })), sseEvent({ error: "model is overloaded, try again later" })],
        end: "hang",
      },
      { kind: "raw", writes: [sseEvent({ error: { message: long, type: "server_error" } })], end: "hang" },
      reply({ text: " there" }),
      { kind: "raw", writes: [sseEvent(chunk({ content: "Hi" })), sseEvent({ error: { message: long, code: 400 } })], end: "hang" },
    );
    const first = await h.run({ input: "go" });
    expect(first.outcome.kind).toBe("completed");
    const reasons = first.sink.events.flatMap((e) => (e.type === "retry" ? [e.retry.reason] : []));
    expect(reasons).toHaveLength(2);
    expect(reasons[0]).toContain("model is overloaded, try again later");
    expect(reasons[1]?.length).toBeLessThan(2_000);
    const second = await h.run({ input: "again" });
    expect(second.outcome).toMatchObject({ kind: "failed", reason: ErrorReason.PROVIDER_REJECTED });
    const message = second.outcome.kind === "failed" ? second.outcome.message : "";
    expect(message).toContain("xxxx");
    expect(message.length).toBeLessThan(2_000);
  });
});
