import { type JsonObject, toJson } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { WorkerRef } from "../../../gen/worker_runtime/v1/common_pb.js";
import { RunStatus } from "../../../gen/worker_runtime/v1/run_pb.js";
import { TranscriptEntrySchema, type TranscriptEntry } from "../../../gen/worker_runtime/v1/transcript_pb.js";
import type { CommandContext } from "./command-context.js";
import type { EventPrinter } from "./event-printer.js";
import { cellText } from "./output.js";

/** How a run that did not finish ended, as the marker names it. */
export type StoppedAs = "cancelled" | "interrupted";

const STOPPED: Partial<Record<RunStatus, StoppedAs>> = {
  [RunStatus.CANCELLED]: "cancelled",
  [RunStatus.INTERRUPTED]: "interrupted",
};

/**
 * The notice the runtime commits as the last entry of a run its stop
 * interrupted (src/runtime/interrupted-notice.ts): it already says the run
 * stopped, so no marker follows it.
 */
const RUN_INTERRUPTED_NOTICE = "run.interrupted";

/**
 * Prints transcript entries, and after the last entry shown of a run that
 * was cancelled or interrupted a line `[stopped: cancelled]` (with
 * `--output json`, a `stopped` field on that entry), so that a partial
 * answer does not read like a complete one. The runtime records such a
 * partial answer as an ordinary assistant message (it never makes up text
 * to close it); the run's status says it stopped, so the marker is read
 * from the run (GetRun, once per run shown) and is the CLI's presentation
 * only (a run the runtime's stop interrupted ends with a notice saying so,
 * which stands for the marker). The last entry is held until the next one (or {@link finish}) says
 * whether it was its run's last.
 */
export class TranscriptPrinter {
  private held: TranscriptEntry | undefined;

  constructor(
    private readonly context: CommandContext,
    private readonly worker: WorkerRef,
    private readonly printer: EventPrinter,
  ) {}

  /** Prints the entries before `entries`' last, and holds that one. */
  async print(entries: readonly TranscriptEntry[]): Promise<void> {
    for (const entry of entries) {
      const previous = this.held;
      this.held = entry;
      if (previous !== undefined) await this.emit(previous, previous.runId !== entry.runId);
    }
  }

  /** Prints the held entry, as the last shown. */
  async finish(): Promise<void> {
    const last = this.held;
    this.held = undefined;
    if (last !== undefined) await this.emit(last, true);
  }

  private async emit(entry: TranscriptEntry, lastOfRun: boolean): Promise<void> {
    const stopped = lastOfRun ? await this.stoppedAs(entry.runId) : undefined;
    const { output } = this.context;
    if (output.json) {
      const json = toJson(TranscriptEntrySchema, entry) as JsonObject;
      output.jsonLine(stopped !== undefined ? { ...json, stopped } : json);
      return;
    }
    this.printer.entry(entry);
    const toldAlready = entry.content.case === "notice" && entry.content.value.code === RUN_INTERRUPTED_NOTICE;
    if (stopped !== undefined && !toldAlready) this.printer.marker(cellText(`[stopped: ${stopped}]`));
  }

  /**
   * How the run ended, if it stopped before finishing; undefined for a run
   * still going, finished, or no longer known to the runtime. Asked once
   * per run shown: a run's entries are contiguous.
   */
  private async stoppedAs(runId: string): Promise<StoppedAs | undefined> {
    if (runId === "") return undefined;
    try {
      const { run } = await this.context.clients.interaction.getRun({ worker: this.worker, runId });
      return run ? STOPPED[run.status] : undefined;
    } catch (error) {
      if (ConnectError.from(error).code === Code.NotFound) return undefined;
      throw error;
    }
  }
}
