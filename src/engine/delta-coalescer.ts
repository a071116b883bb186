import type { RunSink, ToolCallDeltaInit } from "../runtime/index.js";

/** The delta half of a {@link RunSink}: what a streamed response writes as it arrives. */
export type DeltaSink = Pick<RunSink, "textDelta" | "reasoningDelta" | "toolCallDelta">;

/**
 * Joins consecutive deltas of one block that are ready together into one
 * delta. A provider burst brings hundreds of chunks in one read; as one
 * event each, they were each encoded, queued and sent alone. Text is text,
 * so watchers and the in-flight snapshot see the same characters either
 * way. The caller flushes at the end of every read (and every slice of
 * one), so a lone chunk still goes out at once; a delta of another block
 * flushes the pending one first, so order is kept.
 */
export class DeltaCoalescer implements DeltaSink {
  private pending: Pending | undefined;

  constructor(private readonly sink: DeltaSink) {}

  textDelta(blockId: string, text: string): void {
    this.append("text", blockId, text);
  }

  reasoningDelta(blockId: string, text: string): void {
    this.append("reasoning", blockId, text);
  }

  toolCallDelta(blockId: string, delta: ToolCallDeltaInit): void {
    const pending = this.pending;
    const joins =
      pending?.kind === "tool" &&
      pending.blockId === blockId &&
      (!delta.toolCallId || !pending.toolCallId || delta.toolCallId === pending.toolCallId) &&
      (!delta.toolName || !pending.toolName || delta.toolName === pending.toolName);
    if (!joins) {
      this.flush();
      this.pending = {
        kind: "tool",
        blockId,
        text: delta.argumentsDelta ?? "",
        toolCallId: delta.toolCallId ?? "",
        toolName: delta.toolName ?? "",
      };
      return;
    }
    pending.text += delta.argumentsDelta ?? "";
    if (delta.toolCallId) pending.toolCallId = delta.toolCallId;
    if (delta.toolName) pending.toolName = delta.toolName;
  }

  /** Sends the pending delta, if any. */
  flush(): void {
    const pending = this.pending;
    if (!pending) return;
    this.pending = undefined;
    switch (pending.kind) {
      case "text":
        this.sink.textDelta(pending.blockId, pending.text);
        return;
      case "reasoning":
        this.sink.reasoningDelta(pending.blockId, pending.text);
        return;
      case "tool":
        this.sink.toolCallDelta(pending.blockId, {
          ...(pending.toolCallId ? { toolCallId: pending.toolCallId } : {}),
          ...(pending.toolName ? { toolName: pending.toolName } : {}),
          ...(pending.text ? { argumentsDelta: pending.text } : {}),
        });
        return;
    }
  }

  private append(kind: "text" | "reasoning", blockId: string, text: string): void {
    const pending = this.pending;
    if (pending?.kind === kind && pending.blockId === blockId) {
      pending.text += text;
      return;
    }
    this.flush();
    this.pending = { kind, blockId, text, toolCallId: "", toolName: "" };
  }
}

interface Pending {
  kind: "text" | "reasoning" | "tool";
  blockId: string;
  /** Text, reasoning or argument characters joined so far. */
  text: string;
  toolCallId: string;
  toolName: string;
}
