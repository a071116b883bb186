import { toJson } from "@bufbuild/protobuf";
import { ErrorReason } from "../../../gen/worker_runtime/v1/errors_pb.js";
import {
  InFlightBlockKind,
  WorkerEventSchema,
  WorkerSnapshotSchema,
  type WorkerEvent,
  type WorkerSnapshot,
} from "../../../gen/worker_runtime/v1/events_pb.js";
import { RunSchema, RunStatus, type Run } from "../../../gen/worker_runtime/v1/run_pb.js";
import type { TranscriptEntry } from "../../../gen/worker_runtime/v1/transcript_pb.js";
import { runStatusName, runStatusStyle, workerStatusText } from "./format.js";
import { cellText, type Output } from "./output.js";

/** What the printer shows besides the assistant's output. */
export interface EventPrinterOptions {
  /** Show user messages (watch, transcript) — `send` and `chat` already show what was typed. */
  userMessages: boolean;
  /** Show run state changes other than the end and approvals (watch). */
  runStates: boolean;
  /** Show the worker's status changes (watch). */
  workerStates: boolean;
  /**
   * Show a failed run's error on its end line (watch). `send` and `chat`
   * leave it to their closing line on stderr (run-stream.ts), so that the
   * error, with its reason, is printed once.
   */
  endErrors: boolean;
}

/**
 * The notices a run that did not complete commits (a failed run's,
 * src/runtime/run-end-entries.ts; an interrupted one's,
 * src/runtime/interrupted-notice.ts): a live stream tells the same from the
 * run itself (its end line or the closing line).
 */
const RUN_END_NOTICES: ReadonlySet<string> = new Set(["run.failed", "run.interrupted"]);

const TAIL = 160;

/**
 * Renders a worker's events for a person: the reply streams as it arrives,
 * reasoning dimmed, tool calls and results and approval requests on lines
 * of their own. With `--output json` each event is one JSON line instead.
 * Shared by `send`, `watch` and `chat`, so they look alike.
 */
export class EventPrinter {
  private atLineStart = true;
  /** Blocks whose deltas were printed, so their committed entry is not printed twice. */
  private readonly streamed = new Set<string>();
  private readonly runStatus = new Map<string, RunStatus>();
  private workerStatus: string | undefined;

  constructor(
    private readonly output: Output,
    private readonly workerId: string,
    private readonly options: EventPrinterOptions,
  ) {}

  snapshot(snapshot: WorkerSnapshot): void {
    if (this.output.json) {
      this.output.jsonLine({ snapshot: toJson(WorkerSnapshotSchema, snapshot) });
      return;
    }
    if (snapshot.worker) this.workerStatus = workerStatusText(snapshot.worker);
    if (this.options.workerStates && snapshot.worker) this.notice("dim", `[worker ${this.workerId} ${this.workerStatus}]`);
    if (snapshot.activeRun) this.run(snapshot.activeRun);
    for (const block of snapshot.inFlight) {
      this.streamed.add(block.blockId);
      if (block.kind === InFlightBlockKind.TEXT) this.stream(block.text);
      else if (block.kind === InFlightBlockKind.REASONING) this.stream(block.text, "dim");
    }
  }

  /** The run a `send` started. */
  accepted(run: Run): void {
    if (this.output.json) this.output.jsonLine({ run: toJson(RunSchema, run) });
    else this.runStatus.set(run.runId, run.status);
  }

  event(event: WorkerEvent): void {
    if (this.output.json) {
      this.output.jsonLine({ event: toJson(WorkerEventSchema, event) });
      return;
    }
    const kind = event.kind;
    switch (kind.case) {
      case "textDelta":
        this.streamed.add(kind.value.blockId);
        this.stream(kind.value.text);
        return;
      case "reasoningDelta":
        this.streamed.add(kind.value.blockId);
        this.stream(kind.value.text, "dim");
        return;
      case "toolCallDelta":
        // The committed tool call is printed whole; its argument pieces would only flicker.
        return;
      case "blockDiscarded":
        if (this.streamed.delete(kind.value.blockId)) this.notice("dim", "(discarded, the model is retrying)");
        return;
      case "retryScheduled": {
        const retry = kind.value.retry;
        this.notice("yellow", `! provider retry ${retry?.attempt ?? ""} in ${retry?.delayMs ?? 0} ms: ${cellText(retry?.reason ?? "")}`);
        return;
      }
      case "transcriptAppended":
        // A live stream shows a failed or interrupted run's end once, from the run (its end line or the closing
        // line); `transcript` has no runs to read it from, and prints the notice (entry()).
        if (kind.value.content.case === "notice" && RUN_END_NOTICES.has(kind.value.content.value.code)) return;
        this.entry(kind.value);
        return;
      case "runChanged":
        this.run(kind.value);
        return;
      case "workerChanged": {
        const status = workerStatusText(kind.value);
        if (this.options.workerStates && status !== this.workerStatus) this.notice("dim", `[worker ${this.workerId} ${status}]`);
        this.workerStatus = status;
        return;
      }
      case undefined:
        return;
    }
  }

  /** One committed transcript entry (also used by `transcript`). */
  entry(entry: TranscriptEntry): void {
    const content = entry.content;
    switch (content.case) {
      case "userMessage":
        if (this.options.userMessages) this.notice("bold", `> ${this.output.prose(content.value.text)}`);
        return;
      case "assistantMessage":
      case "reasoning":
        if (this.streamed.delete(entry.blockId)) this.endLine();
        else this.notice(content.case === "reasoning" ? "dim" : undefined, this.output.prose(content.value.text));
        return;
      case "toolCall":
        this.notice("cyan", `→ ${cellText(content.value.toolName)} ${cellText(content.value.argumentsJson)}`);
        return;
      case "toolResult": {
        const text = content.value.output.length > TAIL ? `${content.value.output.slice(0, TAIL)}…` : content.value.output;
        const flags = `${content.value.isError ? " (error)" : ""}${content.value.truncated ? " (truncated)" : ""}`;
        this.notice(
          content.value.isError ? "red" : "dim",
          `← ${cellText(content.value.toolName)}${flags}: ${cellText(text.replace(/\s+/g, " ").trim())}`,
        );
        return;
      }
      case "notice":
        this.notice("yellow", `! ${cellText(content.value.code)}: ${cellText(content.value.message)}`);
        return;
      case undefined:
        // A kind a newer runtime added: said so, since skipping it would show the conversation with a hole nothing marks.
        this.notice(
          "dim",
          `[entry ${entry.seq}: a kind of entry this client does not know (written by a newer runtime); upgrade the client to see it]`,
        );
        return;
    }
  }

  private run(run: Run): void {
    const previous = this.runStatus.get(run.runId);
    if (previous === run.status) return;
    this.runStatus.set(run.runId, run.status);
    const approval = run.pendingApproval;
    if (run.status === RunStatus.AWAITING_APPROVAL && approval) {
      this.notice(
        "yellow",
        `? ${cellText(approval.toolName)} ${cellText(approval.argumentsJson)} needs approval: worker-runtime approve ${cellText(this.workerId)} ${cellText(approval.toolCallId)} --run ${cellText(run.runId)} (or reject)`,
      );
      return;
    }
    // A completed run speaks for itself in `send`; other ends (cancelled, failed) always show.
    const quiet = run.status < RunStatus.COMPLETED || run.status === RunStatus.COMPLETED;
    if (quiet && !this.options.runStates) return;
    const failure = run.error;
    const error =
      this.options.endErrors && failure && (failure.reason !== ErrorReason.UNSPECIFIED || failure.message !== "")
        ? `: ${cellText(failure.message || "no detail")}${failure.reason !== ErrorReason.UNSPECIFIED ? ` (reason: ${ErrorReason[failure.reason]})` : ""}`
        : "";
    this.notice(runStatusStyle(run.status) ?? "dim", `[run ${run.runId} ${runStatusName(run.status)}${error}]`);
  }

  /** A line of the CLI's own about what was shown (transcript-printer.ts: `[stopped: cancelled]`). */
  marker(text: string): void {
    this.notice("yellow", text);
  }

  /** Ends a streamed line, if one is open. */
  endLine(): void {
    if (!this.atLineStart) this.output.write("\n");
    this.atLineStart = true;
  }

  /** Streamed message text, escaped for a terminal ({@link Output.prose}), then painted. */
  private stream(text: string, style?: Parameters<Output["paint"]>[0]): void {
    if (text === "") return;
    const shown = this.output.prose(text);
    this.output.write(style ? this.output.paint(style, shown) : shown);
    this.atLineStart = text.endsWith("\n");
  }

  private notice(style: Parameters<Output["paint"]>[0] | undefined, text: string): void {
    this.endLine();
    this.output.line(style ? this.output.paint(style, text) : text);
  }
}
