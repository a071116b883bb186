import { afterEach, describe, expect, it } from "vitest";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { StopReason } from "../../gen/worker_runtime/v1/run_pb.js";
import { chunk, reply, sseEvent } from "../support/openai-chunks.js";
import { startHarness, type Harness } from "./harness.js";

/** One SSE event carrying `payload` as JSON, framed as OpenAI frames it. */

/**
 * What compatible providers send that OpenAI itself does not: framing
 * (CRLF, comments, `event:` fields, bytes split anywhere), chunk shapes
 * (no `choices`, no `delta`, several choices) and endings. Each reaches
 * the backend through the real provider fetch and SSE reader.
 */
describe("provider stream edge cases", () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  it("reads CRLF lines, comments, event, id and retry fields as OpenAI's plain framing", async () => {
    h = await startHarness();
    const first = JSON.stringify(chunk({ content: "héllo " }));
    const last = JSON.stringify(chunk({ content: "wörld" }, "stop"));
    const body = `: keep-alive\r\n\r\nevent: message\r\nid: 1\r\nretry: 10\r\ndata: ${first}\r\n\r\n: ping\r\n\r\ndata: ${last}\r\n\r\ndata: [DONE]\r\n\r\n`;
    h.fake.enqueue({ kind: "raw", writes: [body] });
    const { outcome, sink } = await h.run({ input: "go" });
    expect(outcome.kind).toBe("completed");
    expect(sink.committed("assistantMessage").map((m) => m.text)).toEqual(["héllo wörld"]);
  });

  it("joins a character, a line and a CRLF split across reads", async () => {
    h = await startHarness();
    const body = Buffer.from(`${sseEvent(chunk({ content: "a🌍b" }))}data: ${JSON.stringify(chunk({ content: "ü" }, "stop"))}\r\n\r\n`);
    const emoji = body.indexOf(Buffer.from("🌍"));
    const crlf = body.indexOf("\r\n");
    const cuts = [emoji + 1, emoji + 3, crlf + 1, body.length];
    const writes = cuts.map((end, i) => body.subarray(i === 0 ? 0 : cuts[i - 1], end));
    h.fake.enqueue({ kind: "raw", writes, delayMs: 5 });
    const { outcome, sink } = await h.run({ input: "go" });
    expect(outcome.kind).toBe("completed");
    expect(sink.committed("assistantMessage").map((m) => m.text)).toEqual(["a🌍bü"]);
    expect(sink.streamedText()).toBe("a🌍bü");
    expect(h.fake.requests).toHaveLength(1);
  });

  it("takes a usage-only last chunk without a `choices` field", async () => {
    h = await startHarness();
    const usage = { prompt_tokens: 7, completion_tokens: 2, total_tokens: 9 };
    h.fake.enqueue({ kind: "raw", writes: [sseEvent(chunk({ content: "ok" }, "stop")), sseEvent({ id: "x", usage }), "data: [DONE]\n\n"] });
    const { outcome, sink } = await h.run({ input: "go" });
    expect(outcome.kind).toBe("completed");
    expect(sink.committed("assistantMessage").map((m) => m.text)).toEqual(["ok"]);
    expect(sink.usage.inputTokens).toBe(7n);
    expect(sink.usage.outputTokens).toBe(2n);
  });

  it("takes a finish reason from a choice that has no `delta`", async () => {
    h = await startHarness();
    const finish = { choices: [{ index: 0, finish_reason: "stop" }] };
    h.fake.enqueue({ kind: "raw", writes: [sseEvent(chunk({ content: "ok" })), sseEvent(finish), "data: [DONE]\n\n"] });
    const { outcome, sink } = await h.run({ input: "go" });
    expect(outcome.kind).toBe("completed");
    expect(sink.committed("assistantMessage").map((m) => m.text)).toEqual(["ok"]);
    expect(h.fake.requests).toHaveLength(1);
  });

  it("follows choice 0 when a chunk carries several choices, whatever their order", async () => {
    h = await startHarness();
    const choice = (index: number, content: string, finish: string | null = null): object => ({
      index,
      delta: { content },
      finish_reason: finish,
    });
    h.fake.enqueue({
      kind: "raw",
      writes: [
        sseEvent({ choices: [choice(0, "a"), choice(1, "B")] }),
        sseEvent({ choices: [choice(1, "C"), choice(0, "b")] }),
        sseEvent({ choices: [choice(0, "c", "stop"), choice(1, "D", "length")] }),
        "data: [DONE]\n\n",
      ],
    });
    const { outcome, sink } = await h.run({ input: "go" });
    expect(outcome.kind).toBe("completed");
    expect(sink.committed("assistantMessage").map((m) => m.text)).toEqual(["abc"]);
    expect(sink.streamedText()).toBe("abc");
  });

  it("takes [DONE] as the end of the answer even without a finish reason: nothing is asked again", async () => {
    h = await startHarness();
    h.fake.enqueue({ kind: "raw", writes: [sseEvent(chunk({ content: "whole" })), "data: [DONE]\n\n"] }, reply({ text: "again" }));
    const { outcome, sink } = await h.run({ input: "go" });
    expect(outcome).toEqual({ kind: "completed", stopReason: StopReason.END_TURN });
    expect(h.fake.requests).toHaveLength(1);
    expect(sink.committed("assistantMessage").map((m) => m.text)).toEqual(["whole"]);
    expect(sink.committed("notice")).toEqual([]);
  });

  it("ends the turn at [DONE] when the provider leaves the response open, then closes that connection", async () => {
    // An idle timeout far beyond the test's: the answer must not wait for it.
    h = await startHarness({ streamIdleTimeoutMs: 600_000 });
    h.fake.enqueue(
      { kind: "raw", writes: [sseEvent(chunk({ content: "ok" }, "stop")), "data: [DONE]\n\n"], end: "hang" },
      reply({ text: "next" }),
    );
    const { outcome, sink } = await h.run({ input: "go" });
    expect(outcome.kind).toBe("completed");
    expect(sink.committed("assistantMessage").map((m) => m.text)).toEqual(["ok"]);
    // The response never ends, so its connection cannot be reused: it is closed, not leaked.
    await h.fake.waitForClientClose(0);
    await h.run({ input: "again" });
    expect(h.fake.requests[1]?.connection).not.toBe(h.fake.requests[0]?.connection);
  });

  it("keeps the connection of a response whose end comes after [DONE], for the next request", async () => {
    h = await startHarness();
    h.fake.enqueue(
      { kind: "raw", writes: [sseEvent(chunk({ content: "ok" }, "stop")), "data: [DONE]\n\n", ": bye\n\n"], delayMs: 20 },
      reply({ text: "next" }),
    );
    await h.run({ input: "go" });
    await h.run({ input: "again" });
    expect(h.fake.requests[0]?.clientClosedAt).toBeUndefined();
    expect(h.fake.requests[1]?.connection).toBe(h.fake.requests[0]?.connection);
  });

  it("takes an `event: error` event as the provider's error, whatever its data's shape", async () => {
    h = await startHarness();
    const opening = sseEvent(chunk({ content: "Hello" }));
    h.fake.enqueue(
      // Transient (a 5xx code, or no JSON at all): the answer is continued.
      { kind: "raw", writes: [opening, `event: error\ndata: {"message":"overloaded","code":503}\n\n`], end: "hang" },
      { kind: "raw", writes: [sseEvent(chunk({ content: " there" })), "event: error\ndata: upstream timed out\n\n"], end: "hang" },
      reply({ text: ", friend." }),
    );
    const { outcome, sink } = await h.run({ input: "go" });
    expect(outcome.kind).toBe("completed");
    expect(sink.committed("assistantMessage").map((m) => m.text)).toEqual(["Hello", " there", ", friend."]);
    expect(h.fake.requests).toHaveLength(3);

    // Fatal (a 401 wrapped the SDK's way): the run fails with its typed reason, the text so far kept.
    h.fake.enqueue({
      kind: "raw",
      writes: [opening, `event: error\ndata: {"error":{"message":"key revoked","code":401}}\n\n`],
      end: "hang",
    });
    const failed = await h.run({ input: "again" });
    expect(failed.outcome).toMatchObject({ kind: "failed", reason: ErrorReason.PROVIDER_AUTH_FAILED });
    expect(failed.outcome.kind === "failed" && failed.outcome.message).toContain("key revoked");
    expect(failed.sink.committed("assistantMessage").map((m) => m.text)).toEqual(["Hello"]);
    expect(h.fake.requests).toHaveLength(4);
  });

  it.each([
    ["JSON cut short", '{"choices": ['],
    ["not an object", "42"],
  ])("fails PROVIDER_UNAVAILABLE on a stream event that is not a chunk (%s), keeping the text so far", async (_name, data) => {
    h = await startHarness();
    h.fake.enqueue({ kind: "raw", writes: [sseEvent(chunk({ content: "Hello" })), `data: ${data}\n\n`], end: "hang" });
    const { outcome, sink } = await h.run({ input: "go" });
    expect(outcome).toMatchObject({ kind: "failed", reason: ErrorReason.PROVIDER_UNAVAILABLE });
    expect(outcome.kind === "failed" && outcome.message).toContain("not a chat-completion chunk");
    expect(sink.committed("assistantMessage").map((m) => m.text)).toEqual(["Hello"]);
    await h.fake.waitForClientClose(0);
    expect(h.fake.requests).toHaveLength(1);
  });

  it("takes a whole completion from a server that answers with JSON instead of streaming", async () => {
    h = await startHarness();
    const completion = {
      id: "chatcmpl-1",
      object: "chat.completion",
      model: "local",
      choices: [
        {
          index: 0,
          message: {
            role: "assistant",
            content: "Let me look.",
            reasoning_content: "The file may help.",
            tool_calls: [{ id: "c1", type: "function", function: { name: "list_files", arguments: "{}" } }],
          },
          finish_reason: "tool_calls",
        },
      ],
      usage: { prompt_tokens: 9, completion_tokens: 4, total_tokens: 13 },
    };
    // A 200 with a JSON body: a server that ignores `stream: true`.
    h.fake.enqueue({ kind: "error", status: 200, body: completion }, reply({ text: "Done." }));
    const { outcome, sink } = await h.run({ input: "go", capabilities: ["fs.read"] });
    expect(outcome).toEqual({ kind: "completed", stopReason: StopReason.END_TURN });
    expect(h.fake.requests).toHaveLength(2);
    expect(sink.committed("reasoning").map((r) => r.text)).toEqual(["The file may help."]);
    expect(sink.committed("assistantMessage").map((m) => m.text)).toEqual(["Let me look.", "Done."]);
    expect(sink.committed("toolCall").map((c) => [c.toolCallId, c.toolName])).toEqual([["c1", "list_files"]]);
    expect(sink.streamedText()).toBe("Let me look.Done.");
    expect(sink.usage.inputTokens).toBe(9n);
  });

  it("reads a JSON answer only up to the turn's event bound, then fails LIMIT_EXCEEDED and closes the connection", async () => {
    // The bound is 6 × (answer + argument caps) + 1 Mi characters: about 1 MiB here. The body
    // never ends, so reading it whole would wait for good.
    h = await startHarness({ maxAnswerBytes: 100, maxToolArgumentsBytes: 100 });
    const piece = "a".repeat(64 * 1024);
    h.fake.enqueue({
      kind: "raw",
      headers: { "content-type": "application/json" },
      writes: ['{"choices":[{"index":0,"message":{"role":"assistant","content":"', ...Array.from({ length: 64 }, () => piece)],
      end: "hang",
    });
    const { outcome, sink } = await h.run({ input: "go" });
    expect(outcome).toMatchObject({ kind: "failed", reason: ErrorReason.LIMIT_EXCEEDED });
    expect(outcome.kind === "failed" && outcome.message).toMatch(/a JSON answer over \d+ bytes/);
    expect(sink.committed("assistantMessage")).toEqual([]);
    await h.fake.waitForClientClose(0);
    expect(h.fake.requests).toHaveLength(1);
  });

  it("fails PROVIDER_REJECTED at once when the provider answers with JSON that is neither a completion nor an error", async () => {
    h = await startHarness();
    h.fake.setFallback({ kind: "error", status: 200, body: { status: "ok" } });
    const { outcome, sink } = await h.run({ input: "go" });
    expect(outcome).toMatchObject({ kind: "failed", reason: ErrorReason.PROVIDER_REJECTED });
    expect(outcome.kind === "failed" && outcome.message).toContain("instead of an event stream");
    expect(h.fake.requests).toHaveLength(1);
    expect(sink.committed("assistantMessage")).toEqual([]);
  });

  it("classifies an error object a proxy sends with status 200 like the provider's error", async () => {
    h = await startHarness();
    h.fake.enqueue(
      { kind: "error", status: 200, body: { error: { message: "upstream overloaded", type: "server_error" } } },
      reply({ text: "fine now" }),
      { kind: "error", status: 200, body: { error: { message: "no such model", code: 404 } } },
    );
    const first = await h.run({ input: "go" });
    expect(first.outcome.kind).toBe("completed");
    expect(first.sink.events.filter((e) => e.type === "retry")).toHaveLength(1);
    expect(first.sink.committed("assistantMessage").map((m) => m.text)).toEqual(["fine now"]);
    const second = await h.run({ input: "again" });
    expect(second.outcome).toMatchObject({ kind: "failed", reason: ErrorReason.PROVIDER_REJECTED });
    expect(second.outcome.kind === "failed" && second.outcome.message).toContain("no such model");
    expect(h.fake.requests).toHaveLength(3);
  });

  it("still reads an event stream a server mislabels as JSON (whole, as it cannot stream then)", async () => {
    h = await startHarness();
    const body = `${sseEvent(chunk({ content: "still " }))}${sseEvent(chunk({ content: "fine" }, "stop"))}data: [DONE]\n\n`;
    h.fake.enqueue({ kind: "raw", writes: [body], headers: { "content-type": "application/json" } });
    const { outcome, sink } = await h.run({ input: "go" });
    expect(outcome.kind).toBe("completed");
    expect(sink.committed("assistantMessage").map((m) => m.text)).toEqual(["still fine"]);
  });

  it("assembles interleaved tool calls whose arguments are split inside escapes and surrogate pairs", async () => {
    h = await startHarness();
    const piece = (index: number, extra: object): object => chunk({ tool_calls: [{ index, ...extra }] });
    h.fake.enqueue(
      {
        kind: "stream",
        chunks: [
          piece(1, { id: "c1", type: "function", function: { name: "no_such_tool", arguments: '{"s":"\\ud83c' } }),
          piece(0, { id: "c0", type: "function", function: { name: "no_such_tool", arguments: '{"s":"caf\\u00' } }),
          piece(1, { function: { arguments: "\\udf0d \\" } }),
          piece(0, { function: { arguments: 'e9"}' } }),
          piece(1, { function: { arguments: '"q\\""}' } }),
          chunk({}, "tool_calls"),
        ],
      },
      reply({ text: "done" }),
    );
    const { outcome, sink } = await h.run({ input: "go" });
    expect(outcome.kind).toBe("completed");
    const calls = sink.committed("toolCall").map((c) => [c.toolCallId, JSON.parse(c.argumentsJson)]);
    expect(calls).toEqual([
      ["c0", { s: "café" }],
      ["c1", { s: '🌍 "q"' }],
    ]);
  });
});
