import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";
import { RunErrorSchema, RunSchema, RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { type TranscriptEntry, TranscriptEntrySchema } from "../../gen/worker_runtime/v1/transcript_pb.js";
import { encodedSizeAtMost } from "../../src/runtime/encoded-size-bound.js";

const texts = ["", "a", "é", "漢", "😀", "lone \ud800", "x".repeat(127), "y".repeat(128), "é漢😀".repeat(5_000)];

describe("encodedSizeAtMost", () => {
  it("is never below a transcript entry's encoded size, whatever its content", () => {
    const contents: TranscriptEntry["content"][] = [];
    for (const text of texts) {
      contents.push({ case: "userMessage", value: { $typeName: "worker_runtime.v1.UserMessage", text } });
      contents.push({ case: "assistantMessage", value: { $typeName: "worker_runtime.v1.AssistantMessage", text } });
    }
    for (const content of contents) {
      for (const seq of [0n, 1n, 0xffff_ffff_ffff_ffffn]) {
        const entry = create(TranscriptEntrySchema, {
          seq,
          runId: "run-1",
          blockId: "run-1-b0",
          createdAt: timestampFromDate(new Date()),
          content,
        });
        expect(encodedSizeAtMost(entry)).toBeGreaterThanOrEqual(toBinary(TranscriptEntrySchema, entry).byteLength);
      }
    }
    for (const fields of [
      { toolCallId: "call_1", toolName: "fs.read", argumentsJson: '{"path":"é"}' },
      { toolCallId: "", toolName: "", argumentsJson: "" },
    ]) {
      const entry = create(TranscriptEntrySchema, { seq: 9n, runId: "r", content: { case: "toolCall", value: fields } });
      expect(encodedSizeAtMost(entry)).toBeGreaterThanOrEqual(toBinary(TranscriptEntrySchema, entry).byteLength);
    }
  });

  it("is never below the size of messages with numbers, nested messages, lists, maps and unknown fields", () => {
    const run = create(RunSchema, {
      runId: "run-1",
      worker: { runtimeId: "rt", workerId: "w" },
      input: { text: "漢".repeat(300) },
      status: RunStatus.FAILED,
      usage: { inputTokens: 2n ** 62n, outputTokens: 1n },
      error: { reason: 3, message: "m", metadata: { key: "value", é: "漢😀" } },
      createdAt: timestampFromDate(new Date(-5)),
    });
    run.$unknown = [{ no: 999, wireType: 2, data: new Uint8Array(300) }];
    expect(encodedSizeAtMost(run)).toBeGreaterThanOrEqual(toBinary(RunSchema, run).byteLength);
    expect(encodedSizeAtMost(create(RunSchema))).toBeGreaterThanOrEqual(toBinary(RunSchema, create(RunSchema)).byteLength);
    // Many short map entries: their framing, not their characters, is most of the size.
    const metadata = Object.fromEntries(Array.from({ length: 300 }, (_, i) => [String(i), i % 2 ? "" : "é"]));
    const error = create(RunErrorSchema, { message: "", metadata });
    expect(encodedSizeAtMost(error)).toBeGreaterThanOrEqual(toBinary(RunErrorSchema, error).byteLength);
  });
});
