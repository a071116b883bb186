import { create } from "@bufbuild/protobuf";
import { timestampNow } from "@bufbuild/protobuf/wkt";
import { UsageSchema, type Usage } from "../../gen/worker_runtime/v1/common_pb.js";
import { ProfileSchema, type Profile } from "../../gen/worker_runtime/v1/profile_pb.js";
import { RunSchema } from "../../gen/worker_runtime/v1/run_pb.js";
import {
  TranscriptEntrySchema,
  UserMessageSchema,
  type AssistantMessage,
  type Notice,
  type Reasoning,
  type ToolCall,
  type ToolResult,
  type TranscriptEntry,
  type UserMessage,
} from "../../gen/worker_runtime/v1/transcript_pb.js";
import { InputSchema, WorkerSchema } from "../../gen/worker_runtime/v1/worker_pb.js";
import type { ApprovalResult, PendingToolCall, RetryInit, RunRequest, RunSink, ToolCallDeltaInit } from "../../src/runtime/index.js";

/** One live call the backend made on the sink, in order. */
export type SinkEvent =
  | { type: "text"; blockId: string; text: string }
  | { type: "reasoning"; blockId: string; text: string }
  | { type: "tool_call"; blockId: string; delta: ToolCallDeltaInit }
  | { type: "commit"; blockId: string | undefined; entry: TranscriptEntry }
  | { type: "turn" }
  | { type: "approval"; call: PendingToolCall }
  | { type: "discard"; blockId: string }
  | { type: "retry"; retry: RetryInit };

/** Transcript content values by kind. */
interface ContentValues {
  userMessage: UserMessage;
  assistantMessage: AssistantMessage;
  reasoning: Reasoning;
  toolCall: ToolCall;
  toolResult: ToolResult;
  notice: Notice;
}

/** Decides a pending approval; may wait. */
export type ApprovalHandler = (call: PendingToolCall, signal: AbortSignal) => Promise<ApprovalResult>;

/**
 * A RunSink for driving the real backend in tests without the Runtime: it
 * keeps an in-memory transcript (which also serves `readTranscript`), sums
 * usage and records every call so tests can assert on order and content.
 */
export class RecordingSink implements RunSink {
  readonly events: SinkEvent[] = [];
  readonly transcript: TranscriptEntry[] = [];
  usage: Usage = create(UsageSchema);
  turns = 0;
  private listeners = new Set<(event: SinkEvent) => void>();

  constructor(
    /** The run whose output is being recorded; a test may reuse the sink for a later run. */
    public runId: string,
    private readonly onApproval: ApprovalHandler = () => Promise.resolve({ approved: true, reason: "" }),
  ) {}

  textDelta(blockId: string, text: string): void {
    this.record({ type: "text", blockId, text });
  }
  reasoningDelta(blockId: string, text: string): void {
    this.record({ type: "reasoning", blockId, text });
  }
  toolCallDelta(blockId: string, delta: ToolCallDeltaInit): void {
    this.record({ type: "tool_call", blockId, delta });
  }
  discardBlock(blockId: string): void {
    this.record({ type: "discard", blockId });
  }
  commit(content: TranscriptEntry["content"], blockId?: string): Promise<TranscriptEntry> {
    const entry = create(TranscriptEntrySchema, {
      seq: BigInt(this.transcript.length + 1),
      runId: this.runId,
      createdAt: timestampNow(),
      blockId: blockId ?? "",
      content,
    });
    this.transcript.push(entry);
    this.record({ type: "commit", blockId, entry });
    return Promise.resolve(entry);
  }
  addUsage(usage: Partial<Omit<Usage, "$typeName" | "$unknown">>): void {
    this.usage.inputTokens += usage.inputTokens ?? 0n;
    this.usage.outputTokens += usage.outputTokens ?? 0n;
    this.usage.cachedInputTokens += usage.cachedInputTokens ?? 0n;
    this.usage.reasoningTokens += usage.reasoningTokens ?? 0n;
    this.usage.modelRequests += usage.modelRequests ?? 0n;
    this.usage.unreportedRequests += usage.unreportedRequests ?? 0n;
  }
  turn(): void {
    this.turns++;
    // As the Runtime does: a turn is one model request.
    this.usage.modelRequests++;
    this.record({ type: "turn" });
  }
  retry(retry: RetryInit): void {
    this.record({ type: "retry", retry });
  }
  requestApproval(call: PendingToolCall, signal: AbortSignal): Promise<ApprovalResult> {
    this.record({ type: "approval", call });
    return this.onApproval(call, signal);
  }

  /** Committed user message of this run (as the Runtime would commit it before executing). */
  commitInput(text: string): void {
    this.transcript.push(
      create(TranscriptEntrySchema, {
        seq: BigInt(this.transcript.length + 1),
        runId: this.runId,
        content: { case: "userMessage", value: create(UserMessageSchema, { text }) },
      }),
    );
  }

  /** Concatenated live text deltas. */
  streamedText(): string {
    return this.events.map((e) => (e.type === "text" ? e.text : "")).join("");
  }

  /** Committed entries of one kind. */
  committed<K extends keyof ContentValues>(kind: K): ContentValues[K][] {
    const out: ContentValues[K][] = [];
    for (const entry of this.transcript) {
      if (entry.content.case === kind) out.push(entry.content.value as ContentValues[K]);
    }
    return out;
  }

  /** Resolves when an event matching `predicate` has been recorded. */
  waitFor(predicate: (event: SinkEvent) => boolean): Promise<SinkEvent> {
    const seen = this.events.find(predicate);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve) => {
      const listener = (event: SinkEvent): void => {
        if (!predicate(event)) return;
        this.listeners.delete(listener);
        resolve(event);
      };
      this.listeners.add(listener);
    });
  }

  private record(event: SinkEvent): void {
    this.events.push(event);
    for (const listener of [...this.listeners]) listener(event);
  }
}

/** Builds a RunRequest whose transcript is the sink's. */
export function runRequest(
  sink: RecordingSink,
  init: { input: string; runId: string; profile?: Profile; workspaceDir?: string; capabilities?: string[] },
): RunRequest {
  return {
    worker: create(WorkerSchema, {}),
    profile: init.profile ?? create(ProfileSchema, { name: "companion" }),
    run: create(RunSchema, { runId: init.runId, input: create(InputSchema, { text: init.input }) }),
    ...(init.workspaceDir !== undefined ? { workspaceDir: init.workspaceDir } : {}),
    capabilities: init.capabilities ?? [],
    readTranscript: (beforeSeq, limit) => {
      const older = sink.transcript.filter((entry) => beforeSeq === undefined || entry.seq < beforeSeq);
      return Promise.resolve(older.slice(-limit));
    },
  };
}
