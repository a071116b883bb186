import { readFile, writeFile } from "node:fs/promises";
import { getEventListeners } from "node:events";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { StopReason } from "../../gen/worker_runtime/v1/run_pb.js";
import { chunk, reply } from "../support/openai-chunks.js";
import { runRequest } from "../support/recording-sink.js";
import { profileWith, startHarness, TEST_KEY, type Harness } from "./harness.js";

describe("OpenAI backend runs", () => {
  let h: Harness;
  beforeEach(async () => {
    h = await startHarness();
  });
  afterEach(async () => {
    await h.close();
  });

  it("runs a multi-turn tool loop that reads and writes files, streaming every delta", async () => {
    await writeFile(join(h.workspace, "notes.txt"), "hello from disk");
    // Paced like a real model: pieces that arrive together would be joined into one delta.
    const paced = { delayMs: 2 };
    h.fake.enqueue(
      reply(
        {
          toolCalls: [{ id: "call_read", name: "read_file", arguments: JSON.stringify({ path: "notes.txt" }) }],
          usage: { prompt: 100, completion: 10, cached: 40 },
        },
        paced,
      ),
      reply(
        {
          text: "Writing it now.",
          toolCalls: [
            { id: "call_write", name: "write_file", arguments: JSON.stringify({ path: "out/answer.txt", content: "HELLO FROM DISK" }) },
          ],
          usage: { prompt: 150, completion: 20 },
        },
        paced,
      ),
      reply(
        {
          reasoning: "The file is written, so I can report.",
          text: "Done: out/answer.txt holds the upper-cased note.",
          usage: { prompt: 200, completion: 30, cached: 100, reasoning: 12 },
        },
        paced,
      ),
    );

    const { outcome, sink } = await h.run({ input: "Upper-case notes.txt into out/answer.txt", capabilities: ["fs.read", "fs.write"] });

    expect(outcome).toEqual({ kind: "completed", stopReason: StopReason.END_TURN });
    expect(await readFile(join(h.workspace, "out/answer.txt"), "utf8")).toBe("HELLO FROM DISK");

    // The provider got a streaming request with usage, the tools the worker may use, and the tool results.
    expect(h.fake.requests).toHaveLength(3);
    const [first, second, third] = h.fake.requests.map((r) => r.body);
    expect(h.fake.requests[0]?.headers.authorization).toBe(`Bearer ${TEST_KEY}`);
    expect(first?.stream).toBe(true);
    expect(first?.stream_options).toEqual({ include_usage: true });
    expect(first?.model).toBe("gpt-4o-mini");
    expect(first?.messages[0]?.role).toBe("system");
    expect(first?.messages.at(-1)).toEqual({ role: "user", content: "Upper-case notes.txt into out/answer.txt" });
    expect(first?.tools?.map((t) => t.function.name)).toEqual(["read_file", "list_files", "search_files", "write_file", "edit_file"]);
    expect(second?.messages.at(-2)).toMatchObject({
      role: "assistant",
      tool_calls: [{ id: "call_read", type: "function", function: { name: "read_file", arguments: '{"path":"notes.txt"}' } }],
    });
    expect(second?.messages.at(-1)).toEqual({ role: "tool", tool_call_id: "call_read", content: "hello from disk" });
    expect(third?.messages.at(-2)).toMatchObject({ role: "assistant", content: "Writing it now." });
    expect(third?.messages.at(-1)).toEqual({
      role: "tool",
      tool_call_id: "call_write",
      content: "wrote 15 bytes to out/answer.txt",
    });

    // Transcript: calls, results, reasoning and answer, in order.
    expect(sink.transcript.slice(1).map((e) => e.content.case)).toEqual([
      "toolCall",
      "toolResult",
      "assistantMessage",
      "toolCall",
      "toolResult",
      "reasoning",
      "assistantMessage",
    ]);
    expect(sink.committed("toolResult").map((r) => [r.toolCallId, r.isError])).toEqual([
      ["call_read", false],
      ["call_write", false],
    ]);
    expect(sink.committed("reasoning")[0]?.text).toBe("The file is written, so I can report.");

    // Deltas arrived piece by piece, into the blocks that the commits complete.
    const textDeltas = sink.events.filter((e) => e.type === "text");
    expect(textDeltas.length).toBeGreaterThan(5);
    const reasoningDeltas = sink.events.filter((e) => e.type === "reasoning");
    expect(reasoningDeltas.map((e) => e.text).join("")).toBe("The file is written, so I can report.");
    const finalAnswer = sink.events.findLast((e) => e.type === "commit" && e.entry.content.case === "assistantMessage");
    expect(finalAnswer?.type === "commit" && finalAnswer.blockId).toBe(textDeltas.at(-1)?.blockId);
    const writeDeltas = sink.events.filter((e) => e.type === "tool_call" && e.delta.toolCallId === undefined);
    expect(writeDeltas.length).toBeGreaterThan(3);
    const toolBlock = sink.events.find((e) => e.type === "tool_call" && e.delta.toolCallId === "call_write");
    const assembled = sink.events
      .filter((e) => e.type === "tool_call" && toolBlock?.type === "tool_call" && e.blockId === toolBlock.blockId)
      .map((e) => (e.type === "tool_call" ? (e.delta.argumentsDelta ?? "") : ""))
      .join("");
    expect(JSON.parse(assembled)).toEqual({ path: "out/answer.txt", content: "HELLO FROM DISK" });

    // Usage from each response's last chunk; one turn per model request.
    expect(sink.turns).toBe(3);
    expect(sink.usage.inputTokens).toBe(450n);
    expect(sink.usage.outputTokens).toBe(60n);
    expect(sink.usage.cachedInputTokens).toBe(140n);
    expect(sink.usage.reasoningTokens).toBe(12n);
    expect(sink.usage.modelRequests).toBe(3n);
  });

  it("surfaces reasoning sent as `reasoning` (OpenRouter/Ollama style)", async () => {
    h.fake.enqueue(reply({ reasoning: "thinking hard", reasoningField: "reasoning", text: "42" }));
    const { outcome, sink } = await h.run({ input: "answer?" });
    expect(outcome.kind).toBe("completed");
    expect(sink.committed("reasoning").map((r) => r.text)).toEqual(["thinking hard"]);
    expect(sink.committed("assistantMessage").map((m) => m.text)).toEqual(["42"]);
  });

  it("sends the profile's model, temperature and output bound, and the committed history", async () => {
    h.fake.enqueue(reply({ text: "first answer" }), reply({ text: "second answer" }));
    const profile = profileWith(h.companion, {
      name: "custom",
      model: "local-model",
      temperature: 0.2,
      maxOutputTokens: 77,
      systemPrompt: "Be terse.",
    });
    const { sink } = await h.run({ input: "first question", profile });
    await h.run({ input: "second question", profile, sink });
    const body = h.fake.requests[1]?.body;
    expect(body?.model).toBe("local-model");
    expect(body?.temperature).toBe(0.2);
    // A compatible server (base URL set) gets the widely supported max_tokens.
    expect((body as unknown as { max_tokens: number }).max_tokens).toBe(77);
    expect(body?.messages).toEqual([
      { role: "system", content: "Be terse." },
      { role: "user", content: "first question" },
      { role: "assistant", content: "first answer" },
      { role: "user", content: "second question" },
    ]);
  });

  it("sends its request while the input is still being written: history read up to inputSeq, the input from the run", async () => {
    h.fake.enqueue(reply({ text: "first answer" }), reply({ text: "second answer" }));
    const { sink } = await h.run({ input: "first question" });
    // The second input is not in the transcript yet (the Runtime is still writing it, at inputSeq 3):
    // a read up to it answers, a read past it would wait for the write (here: forever).
    const reads: (bigint | undefined)[] = [];
    sink.runId = "run-second";
    const request = runRequest(sink, { input: "second question", runId: "run-second", profile: h.companion });
    const outcome = await h.backend.execute(
      {
        ...request,
        inputSeq: 3n,
        readTranscript: (beforeSeq, limit) => {
          reads.push(beforeSeq);
          return beforeSeq !== undefined && beforeSeq <= 3n ? request.readTranscript(beforeSeq, limit) : new Promise(() => {});
        },
      },
      sink,
      new AbortController().signal,
    );
    expect(outcome.kind).toBe("completed");
    expect(reads).toEqual([3n]);
    expect(h.fake.requests[1]?.body.messages.filter((message) => message.role !== "system")).toEqual([
      { role: "user", content: "first question" },
      { role: "assistant", content: "first answer" },
      { role: "user", content: "second question" },
    ]);
  }, 5_000);

  it("bounds the replayed history by bytes (historyMaxBytes)", async () => {
    await h.close();
    h = await startHarness({ historyMaxBytes: 8_000 });
    const big = JSON.stringify({ path: "big.txt", content: "x".repeat(20_000) });
    h.fake.enqueue(reply({ toolCalls: [{ id: "w1", name: "write_file", arguments: big }] }), reply({ text: "written" }));
    const first = await h.run({ input: "write a big file", capabilities: ["fs.write"] });
    h.fake.enqueue(reply({ text: "ok" }));
    await h.run({ input: "and now?", sink: first.sink });
    const sent = h.fake.requests[2]?.body.messages ?? [];
    expect(JSON.stringify(sent).length).toBeLessThan(8_000);
    expect(sent.find((m) => m.tool_calls)?.tool_calls?.[0]?.function.arguments).toContain("left out of the replayed history");
    expect(sent.at(-1)).toEqual({ role: "user", content: "and now?" });
  });

  it("stops with MAX_TOKENS when the reply hits the output limit", async () => {
    h.fake.enqueue(reply({ text: "a long answer that got cut", finishReason: "length" }));
    const { outcome } = await h.run({ input: "go" });
    expect(outcome).toEqual({ kind: "completed", stopReason: StopReason.MAX_TOKENS });
  });

  it("says when the provider's content filter stopped the reply, and runs none of its calls", async () => {
    h.fake.enqueue({
      kind: "stream",
      chunks: [
        chunk({ content: "Here is how to" }),
        chunk({ tool_calls: [{ index: 0, id: "c1", type: "function", function: { name: "read_file", arguments: '{"pa' } }] }),
        chunk({}, "content_filter"),
      ],
    });
    const { outcome, sink } = await h.run({ input: "go", capabilities: ["fs.read"] });
    expect(outcome).toEqual({ kind: "completed", stopReason: StopReason.END_TURN });
    expect(h.fake.requests).toHaveLength(1);
    expect(sink.committed("assistantMessage").map((m) => m.text)).toEqual(["Here is how to"]);
    expect(sink.committed("toolResult").map((r) => [r.toolCallId, r.output])).toEqual([
      ["c1", "Not run: the provider's content filter stopped the reply."],
    ]);
    expect(sink.committed("notice").map((n) => [n.code, n.message])).toEqual([
      ["run.stopped", "The run stopped: the provider's content filter stopped the reply."],
    ]);
  });

  it("completes with MAX_TURNS, leaving the last turn's calls unrun and answered", async () => {
    await writeFile(join(h.workspace, "a.txt"), "a");
    const call = (id: string) => ({ id, name: "read_file", arguments: '{"path":"a.txt"}' });
    h.fake.enqueue(reply({ toolCalls: [call("c1")] }), reply({ toolCalls: [call("c2")] }));
    const profile = profileWith(h.companion, { maxTurns: 2 });
    const { outcome, sink } = await h.run({ input: "loop", profile, capabilities: ["fs.read"] });
    expect(outcome).toEqual({ kind: "completed", stopReason: StopReason.MAX_TURNS });
    expect(h.fake.requests).toHaveLength(2);
    const results = sink.committed("toolResult");
    expect(results.map((r) => [r.toolCallId, r.output])).toEqual([
      ["c1", "a"],
      ["c2", "Not run: the run reached its limit of 2 turns."],
    ]);
    expect(sink.committed("notice")[0]?.code).toBe("run.stopped");
  });

  it("leaves no listener on the run's signal for a model turn that ended (a long tool loop stays under Node's listener warning)", async () => {
    await writeFile(join(h.workspace, "a.txt"), "a");
    const turns = 12;
    const call = (id: string) => ({ id, name: "read_file", arguments: '{"path":"a.txt"}' });
    h.fake.enqueue(...Array.from({ length: turns - 1 }, (_, i) => reply({ toolCalls: [call(`c${i}`)] })), reply({ text: "done" }));
    const controller = new AbortController();
    const before = getEventListeners(controller.signal, "abort").length;
    const { outcome } = await h.run({ input: "loop", capabilities: ["fs.read"], signal: controller.signal });
    expect(outcome).toEqual({ kind: "completed", stopReason: StopReason.END_TURN });
    expect(h.fake.requests).toHaveLength(turns);
    expect(getEventListeners(controller.signal, "abort").length).toBe(before);
  });

  it("offers only the tools whose capability the worker holds, and refuses others", async () => {
    h.fake.enqueue(reply({ toolCalls: [{ id: "c1", name: "run_command", arguments: '{"command":"echo hi"}' }] }), reply({ text: "ok" }));
    const { sink } = await h.run({ input: "run it", capabilities: ["fs.read"] });
    expect(h.fake.requests[0]?.body.tools?.map((t) => t.function.name)).toEqual(["read_file", "list_files", "search_files"]);
    expect(sink.committed("toolResult")[0]).toMatchObject({
      isError: true,
      output: 'tool "run_command" is not available to this worker; the tools it may call are: read_file, list_files, search_files',
    });
  });

  it("tells the model calling an unknown tool that no tool is available when none is offered", async () => {
    h.fake.enqueue(reply({ toolCalls: [{ id: "c1", name: "delete_everything", arguments: "{}" }] }), reply({ text: "ok" }));
    const { sink } = await h.run({ input: "go" });
    expect(sink.committed("toolResult")[0]).toMatchObject({
      isError: true,
      output: 'tool "delete_everything" is not available to this worker; it may call no tools',
    });
  });

  it("commits, runs and replays interleaved parallel tool calls in index order, not arrival order", async () => {
    await writeFile(join(h.workspace, "a.txt"), "alpha");
    await writeFile(join(h.workspace, "b.txt"), "beta");
    const header = (index: number, id: string) => ({ index, id, type: "function", function: { name: "read_file", arguments: "" } });
    const args = (index: number, piece: string) => ({ index, function: { arguments: piece } });
    // Index 1 starts first; the two calls' argument pieces interleave, once in one delta.
    const chunks = [
      chunk({ role: "assistant", content: "" }),
      chunk({ tool_calls: [header(1, "call_b")] }),
      chunk({ tool_calls: [header(0, "call_a")] }),
      chunk({ tool_calls: [args(1, '{"path":'), args(0, '{"path":')] }),
      chunk({ tool_calls: [args(0, '"a.txt"}')] }),
      chunk({ tool_calls: [args(1, '"b.txt"}')] }),
      chunk({}, "tool_calls"),
    ];
    h.fake.enqueue({ kind: "stream", chunks }, reply({ text: "read both" }));
    const { outcome, sink } = await h.run({ input: "read a and b", capabilities: ["fs.read"] });
    expect(outcome.kind).toBe("completed");
    expect(sink.committed("toolCall").map((c) => [c.toolCallId, c.argumentsJson])).toEqual([
      ["call_a", '{"path":"a.txt"}'],
      ["call_b", '{"path":"b.txt"}'],
    ]);
    expect(sink.committed("toolResult").map((r) => [r.toolCallId, r.output])).toEqual([
      ["call_a", "alpha"],
      ["call_b", "beta"],
    ]);
    const replayed = h.fake.requests[1]?.body.messages.slice(-3);
    expect(replayed?.[0]?.tool_calls?.map((c) => c.id)).toEqual(["call_a", "call_b"]);
    expect(replayed?.slice(1).map((m) => m.tool_call_id)).toEqual(["call_a", "call_b"]);
  });

  it.each([
    ["repeat index 0 for every call", { index: 0 }],
    ["omit index", {}],
  ])("keeps parallel tool calls apart when compatible servers %s", async (_how, index: object) => {
    await writeFile(join(h.workspace, "a.txt"), "alpha");
    await writeFile(join(h.workspace, "b.txt"), "beta");
    const calls = [
      { id: "call_a", path: "a.txt" },
      { id: "call_b", path: "b.txt" },
    ];
    const chunks: object[] = [chunk({ role: "assistant", content: "" })];
    calls.forEach((call) => {
      chunks.push(chunk({ tool_calls: [{ ...index, id: call.id, type: "function", function: { name: "read_file", arguments: "" } }] }));
      chunks.push(chunk({ tool_calls: [{ ...index, function: { arguments: '{"path":' } }] }));
      chunks.push(chunk({ tool_calls: [{ ...index, function: { arguments: JSON.stringify(call.path) + "}" } }] }));
    });
    chunks.push(chunk({}, "tool_calls"));
    h.fake.enqueue({ kind: "stream", chunks }, reply({ text: "read both" }));
    const { outcome, sink } = await h.run({ input: "read a and b", capabilities: ["fs.read"] });
    expect(outcome.kind).toBe("completed");
    expect(sink.committed("toolCall").map((c) => [c.toolCallId, c.argumentsJson])).toEqual([
      ["call_a", '{"path":"a.txt"}'],
      ["call_b", '{"path":"b.txt"}'],
    ]);
    expect(sink.committed("toolResult").map((r) => [r.toolCallId, r.output])).toEqual([
      ["call_a", "alpha"],
      ["call_b", "beta"],
    ]);
  });
});
