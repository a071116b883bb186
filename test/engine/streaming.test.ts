import { afterEach, describe, expect, it } from "vitest";
import { chunk, pieces, replyChunks } from "../support/openai-chunks.js";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { SLICE_MAX_CHUNKS } from "../../src/engine/event-loop-slices.js";
import { maxSseEventChars } from "../../src/engine/sse-events.js";
import { RecordingSink, type SinkEvent } from "../support/recording-sink.js";
import { startHarness, type Harness } from "./harness.js";

/**
 * The stream path from the provider's bytes to the sink: chunks that
 * arrive together are joined into one delta per block, a lone chunk goes
 * out at once, and a long burst is processed in slices that let the event
 * loop turn. Checked by event order, never by elapsed time.
 */
describe("OpenAI backend stream path", () => {
  let h: Harness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });

  const texts = (events: SinkEvent[], type: "text" | "reasoning"): string[] => events.flatMap((e) => (e.type === type ? [e.text] : []));

  it("joins a burst of chunks that arrive together into a few deltas with the same text", async () => {
    h = await startHarness();
    const reasoning = "Let me think about this one. ".repeat(10);
    const text = "The answer, piece by piece. ".repeat(20);
    const chunks = replyChunks({ reasoning, text, pieceSize: 3 });
    h.fake.enqueue({ kind: "stream", chunks, oneWrite: true });
    const { outcome, sink } = await h.run({ input: "go" });
    expect(outcome.kind).toBe("completed");
    const textDeltas = texts(sink.events, "text");
    const reasoningDeltas = texts(sink.events, "reasoning");
    // 187 text pieces and 97 reasoning pieces, read together: far fewer events.
    expect(textDeltas.length).toBeGreaterThan(0);
    expect(textDeltas.length).toBeLessThan(pieces(text, 3).length / 4);
    expect(reasoningDeltas.length).toBeLessThan(pieces(reasoning, 3).length / 4);
    expect(textDeltas.join("")).toBe(text);
    expect(reasoningDeltas.join("")).toBe(reasoning);
    expect(sink.committed("assistantMessage").map((m) => m.text)).toEqual([text]);
    // Reasoning came first and stays first: blocks are never interleaved out of order.
    const firstText = sink.events.findIndex((e) => e.type === "text");
    expect(sink.events.findLastIndex((e) => e.type === "reasoning")).toBeLessThan(firstText);
  });

  it("joins a tool call's argument pieces, keeping its id and name", async () => {
    h = await startHarness();
    const args = JSON.stringify({ path: "notes.txt", content: "x".repeat(300) });
    const chunks = replyChunks({ toolCalls: [{ id: "call_1", name: "no_such_tool", arguments: args }], pieceSize: 4 });
    h.fake.enqueue({ kind: "stream", chunks, oneWrite: true }, { kind: "stream", chunks: replyChunks({ text: "ok" }) });
    const { sink } = await h.run({ input: "go" });
    const deltas = sink.events.flatMap((e) => (e.type === "tool_call" ? [e] : []));
    expect(deltas.length).toBeGreaterThan(0);
    expect(deltas.length).toBeLessThan(pieces(args, 4).length / 4);
    expect(deltas[0]?.delta).toMatchObject({ toolCallId: "call_1", toolName: "no_such_tool" });
    expect(deltas.map((d) => d.delta.argumentsDelta ?? "").join("")).toBe(args);
    expect(new Set(deltas.map((d) => d.blockId)).size).toBe(1);
  });

  it("sends a lone chunk at once, while the provider's stream is still open", async () => {
    h = await startHarness();
    h.fake.enqueue({ kind: "stream", chunks: [chunk({ role: "assistant", content: "" }), chunk({ content: "Hi" })], end: "hang" });
    const controller = new AbortController();
    const sink = new RecordingSink("lone");
    const running = h.run({ input: "go", sink, signal: controller.signal });
    const delta = await sink.waitFor((e) => e.type === "text");
    expect(delta).toMatchObject({ type: "text", text: "Hi" });
    // Nothing else came and the response is still open: the delta did not wait for more.
    expect(h.fake.requests[0]?.clientClosedAt).toBeUndefined();
    controller.abort();
    const { outcome } = await running;
    expect(outcome.kind).toBe("cancelled");
  });

  it("fails LIMIT_EXCEEDED on an SSE event longer than anything a turn could keep, instead of buffering it", async () => {
    h = await startHarness({ maxAnswerBytes: 1024, maxToolArgumentsBytes: 1024 });
    const bound = maxSseEventChars({ maxAnswerBytes: 1024, maxToolArgumentsBytes: 1024 });
    // A tiny delta in a chunk padded past the bound: only the event's size is wrong.
    const padded = { ...(chunk({ content: "hi" }) as object), padding: "x".repeat(2 * bound) };
    h.fake.enqueue({ kind: "stream", chunks: [chunk({ role: "assistant", content: "" }), padded, chunk({}, "stop")] });
    const { outcome } = await h.run({ input: "go" });
    expect(outcome).toMatchObject({ kind: "failed", reason: ErrorReason.LIMIT_EXCEEDED });
    expect(outcome.kind === "failed" && outcome.message).toContain(`over ${bound} characters`);
  });

  it("processes a long burst in slices, letting the event loop turn in between", async () => {
    h = await startHarness();
    // Small chunks, as a fast local model sends them: over a thousand fit in one 64 KiB read.
    const piece = "abcdefgh";
    const count = 20_000;
    const chunks = [chunk({ role: "assistant", content: "" })];
    for (let i = 0; i < count; i++) chunks.push({ choices: [{ index: 0, delta: { content: piece } }] });
    chunks.push(chunk({}, "stop"));
    h.fake.enqueue({ kind: "stream", chunks, oneWrite: true });
    const sink = new RecordingSink("burst");
    let streamed = 0;
    let streamedWhenLoopTurned: number | undefined;
    sink.waitFor((e) => {
      if (e.type === "text") streamed += e.text.length;
      return false;
    });
    // At the first delta, ask for the next turn of the event loop (where timers, I/O and other runs get
    // their go), and hold the loop a moment so that the burst is buffered when the backend reads on.
    sink.waitFor((e) => {
      if (e.type !== "text") return false;
      setImmediate(() => (streamedWhenLoopTurned = streamed / piece.length));
      const until = performance.now() + 50;
      while (performance.now() < until);
      return true;
    });
    const { outcome } = await h.run({ input: "go", sink });
    expect(outcome.kind).toBe("completed");
    expect(sink.streamedText()).toBe(piece.repeat(count));
    // The loop turned after one slice, not after a whole read of the burst.
    expect(streamedWhenLoopTurned).toBeGreaterThan(0);
    expect(streamedWhenLoopTurned).toBeLessThanOrEqual(SLICE_MAX_CHUNKS);
  });
});
