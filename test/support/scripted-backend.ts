import { create } from "@bufbuild/protobuf";
import { ProfileSchema } from "../../gen/worker_runtime/v1/profile_pb.js";
import { StopReason } from "../../gen/worker_runtime/v1/run_pb.js";
import { ToolCallSchema } from "../../gen/worker_runtime/v1/transcript_pb.js";
import type { ExecutionBackend, RunOutcome, RunRequest, RunSink } from "../../src/runtime/index.js";

/** One run's behaviour in a scripted backend. */
export type RunScript = (request: RunRequest, sink: RunSink, signal: AbortSignal) => Promise<RunOutcome>;

/**
 * A test-only execution backend injected through the library API: each run
 * follows the script the test provides. It lets core tests drive runs
 * precisely; it lives in test/ and is never part of the runtime.
 */
export class ScriptedBackend implements ExecutionBackend {
  readonly name = "scripted";
  /** Every run request received, in order. */
  readonly requests: RunRequest[] = [];
  /** The AbortSignal of every run, in order. */
  readonly signals: AbortSignal[] = [];
  private readonly scripts: RunScript[] = [];

  constructor(private readonly fallback: RunScript = replyWith("ok")) {}

  /** Queues scripts for the next runs; runs beyond the queue use the fallback. */
  enqueue(...scripts: RunScript[]): this {
    this.scripts.push(...scripts);
    return this;
  }

  availability() {
    return { available: true as const };
  }

  profiles() {
    return [create(ProfileSchema, { name: "companion", model: "scripted", maxTurns: 4 })];
  }

  toolCapabilities() {
    return ["fs.read", "fs.write", "shell.exec"];
  }

  execute(request: RunRequest, sink: RunSink, signal: AbortSignal): Promise<RunOutcome> {
    this.requests.push(request);
    this.signals.push(signal);
    const script = this.scripts.shift() ?? this.fallback;
    return script(request, sink, signal);
  }
}

/** Streams `text` in `chunks` deltas, commits it, reports usage and completes. */
export function replyWith(text: string, chunks = 3, usage = { inputTokens: 10n, outputTokens: 5n }): RunScript {
  return async (request, sink) => {
    const blockId = `${request.run.runId}-b0`;
    sink.turn();
    const size = Math.max(1, Math.ceil(text.length / chunks));
    for (let i = 0; i < text.length; i += size) sink.textDelta(blockId, text.slice(i, i + size));
    await sink.commit({ case: "assistantMessage", value: { $typeName: "worker_runtime.v1.AssistantMessage", text } }, blockId);
    sink.addUsage(usage);
    return { kind: "completed", stopReason: StopReason.END_TURN };
  };
}

/**
 * Streams `partial` and then waits until the test releases it (or the run
 * is cancelled, committing the partial text as a cancelled answer would).
 */
export function holdOpen(partial: string): { script: RunScript; release: () => void; started: Promise<void> } {
  let release!: () => void;
  let markStarted!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  const started = new Promise<void>((resolve) => (markStarted = resolve));
  const script: RunScript = async (request, sink, signal) => {
    const blockId = `${request.run.runId}-b0`;
    sink.textDelta(blockId, partial);
    markStarted();
    await Promise.race([released, new Promise((resolve) => signal.addEventListener("abort", resolve, { once: true }))]);
    await sink.commit({ case: "assistantMessage", value: { $typeName: "worker_runtime.v1.AssistantMessage", text: partial } }, blockId);
    if (signal.aborted) return { kind: "cancelled" };
    return { kind: "completed", stopReason: StopReason.END_TURN };
  };
  return { script, release, started };
}

/**
 * A run that commits a `write_file` tool call, waits for its approval (asked
 * again when the run is resumed after a restart), calls `then` with the run's
 * request once approved, and answers; cancelled if the wait is.
 */
export function awaitApproval(then: (request: RunRequest) => void = () => {}): RunScript {
  return async (request, sink, signal) => {
    const call = { toolCallId: "c1", toolName: "write_file", argumentsJson: "{}" };
    if (!request.resume) await sink.commit({ case: "toolCall", value: create(ToolCallSchema, call) });
    try {
      await sink.requestApproval(call, signal);
    } catch {
      return { kind: "cancelled" };
    }
    then(request);
    return { kind: "completed", stopReason: StopReason.END_TURN };
  };
}
