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

  /**
   * Sends the pending delta, if any. A trailing high surrogate waits for the
   * next chunk unless `final` (the turn's end): a provider may cut between
   * the halves of a pair, and each delta is encoded alone as UTF-8, where a
   * lone half becomes U+FFFD on every watcher's screen.
   */
  flush(final = false): void {
    const pending = this.pending;
    if (!pending) return;
    const held = !final && endsInHighSurrogate(pending.text) ? pending.text.slice(-1) : "";
    const text = held ? pending.text.slice(0, -1) : pending.text;
    this.pending = held ? { kind: pending.kind, blockId: pending.blockId, text: held, toolCallId: "", toolName: "" } : undefined;
    switch (pending.kind) {
      case "text":
        if (text) this.sink.textDelta(pending.blockId, text);
        return;
      case "reasoning":
        if (text) this.sink.reasoningDelta(pending.blockId, text);
        return;
      case "tool":
        if (!text && !pending.toolCallId && !pending.toolName) return;
        this.sink.toolCallDelta(pending.blockId, {
          ...(pending.toolCallId ? { toolCallId: pending.toolCallId } : {}),
          ...(pending.toolName ? { toolName: pending.toolName } : {}),
          ...(text ? { argumentsDelta: text } : {}),
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

/** Whether `text` ends in the first half of a surrogate pair. */
function endsInHighSurrogate(text: string): boolean {
  const last = text.charCodeAt(text.length - 1);
  return last >= 0xd800 && last <= 0xdbff;
}
