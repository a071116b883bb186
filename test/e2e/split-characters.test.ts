import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { PROTOCOLS } from "../support/harness.js";
import { chunk } from "../support/openai-chunks.js";
import { startOpenAIServer, type OpenAIServer } from "./openai-harness.js";

/**
 * A provider may cut its text anywhere, even between the two halves of a
 * surrogate pair (JSON "\ud83d" in one chunk, "\ude00" in the next). Each
 * delta goes out as a protobuf string, i.e. UTF-8, where a lone half becomes
 * U+FFFD: watchers (the console among them) showed "��" until the answer was
 * committed. The half must wait for its other half.
 */
describe.each(PROTOCOLS)("a character split across provider chunks (%s)", (protocol) => {
  let s: OpenAIServer;
  beforeEach(async () => {
    s = await startOpenAIServer(protocol);
  });
  afterEach(async () => {
    await s.close();
  });

  it("reaches watchers whole, in text and in reasoning", async () => {
    const worker = await s.newWorker();
    s.fake.enqueue({
      kind: "stream",
      chunks: [
        chunk({ role: "assistant", content: "" }),
        chunk({ reasoning_content: "Think \ud83e" }),
        chunk({ reasoning_content: "\udd14 hard" }),
        chunk({ content: "Smile \ud83d" }),
        chunk({ content: "\ude00 twice \ud83d" }),
        chunk({ content: "\ude01 done" }),
        chunk({}, "stop"),
      ],
      // Apart, so each chunk is its own read and its own delta.
      delayMs: 30,
    });
    const { run, events } = await s.runToEnd(worker, "go");
    expect(run.status).toBe(RunStatus.COMPLETED);
    const texts = events.flatMap((e) => (e.kind.case === "textDelta" ? [e.kind.value.text] : []));
    const reasoning = events.flatMap((e) => (e.kind.case === "reasoningDelta" ? [e.kind.value.text] : []));
    expect(texts.join("")).toBe("Smile \u{1F600} twice \u{1F601} done");
    expect(reasoning.join("")).toBe("Think \u{1F914} hard");
    for (const delta of [...texts, ...reasoning]) expect(delta).not.toContain("\uFFFD");
    expect(texts.length).toBeGreaterThan(1);
  });
});
