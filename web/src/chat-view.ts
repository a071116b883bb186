import { create } from "@bufbuild/protobuf";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { InFlightBlockKind, type WorkerEvent } from "../../gen/worker_runtime/v1/events_pb.js";
import { type Run, RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { type WorkerRef, WorkerRefSchema } from "../../gen/worker_runtime/v1/common_pb.js";
import { ConnectivityState, type Worker } from "../../gen/worker_runtime/v1/worker_pb.js";
import type { TranscriptEntry } from "../../gen/worker_runtime/v1/transcript_pb.js";
import type { WatchWorkerResponse } from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import type { Api } from "./api.js";
import { ApprovalPanel } from "./approval-panel.js";
import { ChatHeader } from "./chat-header.js";
import { Composer } from "./composer.js";
import { cursorLost, DELETED_WORKER, describeError, endedText, notFoundWorker, PROVIDER_HINT, reasonOf } from "./describe-error.js";
import { h } from "./dom.js";
import { FollowScroll } from "./follow-scroll.js";
import { LiveBlocks } from "./live-blocks.js";
import { OrderedLog } from "./ordered-log.js";
import { RawEventView } from "./raw-event-view.js";
import { RunStatuses } from "./run-statuses.js";
import { renderEntry } from "./transcript-entry.js";
import { untilHidden, whenVisible } from "./visibility.js";

/** Entries per history page (ReadTranscript limit). */
const PAGE = 30;
/**
 * The most entries (and marks) the page holds while it follows the newest
 * output: a chat left open for days would otherwise grow its DOM, and the
 * memory and layout it costs, for ever. The oldest leave; scrolling to the
 * top reads them again, a page at a time.
 */
const MAX_SHOWN = 200;

/**
 * One worker's conversation: history in pages from ReadTranscript, the live
 * part from WatchWorker (resumed from its last cursor after any drop), the
 * composer, Stop, approvals and the raw event view.
 */
export class ChatView {
  readonly element: HTMLElement;
  private readonly ref: WorkerRef;
  private readonly abort = new AbortController();
  private readonly log: OrderedLog;
  private readonly scroll: FollowScroll;
  private readonly live: LiveBlocks;
  private readonly banner: HTMLElement;
  private readonly error: HTMLElement;
  private readonly header: ChatHeader;
  private readonly connectivity: HTMLElement;
  private readonly approval: ApprovalPanel;
  private readonly stopButton: HTMLButtonElement;
  /** The message box, closed from the moment the worker is known to take no more messages (stopped, failed, deleted). */
  private readonly composer: Composer;
  private readonly raw = new RawEventView();
  /** Highest committed seq per run, to place a "stopped" or "interrupted" mark after it. */
  private readonly runLastSeq = new Map<string, number>();
  /**
   * Which runs ended cut. Replaced on each re-sync from a fresh snapshot: a
   * history page asked for before one compares its instance with this and is
   * dropped, since the log it was to extend is gone (put under the new tail,
   * it showed older entries with a gap above them that nothing filled).
   */
  private runs: RunStatuses;
  private cursor = "";
  private activeRun: Run | undefined;
  private hasOlder = false;
  /** The instance of {@link runs} whose older page is being read. */
  private loadingOlder: RunStatuses | undefined;
  private frameQueued = false;
  /** The error shown is a busy refusal, which stood under an idle header once the answer had ended. */
  private errorUntilIdle = false;

  /**
   * `onWorker` hears of every change of the worker or its active run as the
   * watch tells it, with the header's words for it (the sidebar shows them at once).
   */
  constructor(
    private readonly api: Api,
    runtimeId: string,
    workerId: string,
    onWorker: (worker: Worker, statusText: string) => void = () => {},
  ) {
    this.ref = create(WorkerRefSchema, { runtimeId, workerId });
    this.runs = new RunStatuses(api, this.ref, this.abort.signal);
    this.banner = h("div", { class: "banner", role: "status", hidden: true }, "Connection lost. Reconnecting…");
    this.error = h("div", { class: "error", role: "alert", hidden: true });
    this.header = new ChatHeader(workerId, onWorker);
    this.connectivity = h("div", { class: "not-connected", hidden: true });
    this.approval = new ApprovalPanel(api, this.ref, (text) => this.showError(text));
    // Committed entries only: a screen reader reads each once. The streaming copy (this.live) is
    // outside the region, since it is re-rendered every frame.
    const logRoot = h("div", { class: "log", role: "log", "aria-live": "polite", "aria-label": "Conversation" });
    this.log = new OrderedLog(logRoot);
    this.live = new LiveBlocks(h("div", { class: "live" }), () => this.queueFrame());
    const scroller = h("div", { class: "scroller" }, logRoot, this.live.element);
    this.scroll = new FollowScroll(scroller, () => void this.loadOlder());
    this.stopButton = h("button", { class: "stop", type: "button", hidden: true, onclick: () => void this.stop() }, "Stop");
    this.composer = new Composer({
      api,
      worker: this.ref,
      report: (text, busyWith) => this.showError(text, busyWith),
      awaitingApproval: () => this.activeRun?.status === RunStatus.AWAITING_APPROVAL,
      actions: [this.stopButton],
    });
    this.element = h(
      "section",
      { class: "chat" },
      this.header.element,
      this.banner,
      this.connectivity,
      scroller,
      this.approval.element,
      this.error,
      this.composer.note,
      this.composer.form,
      this.raw.element,
    );
  }

  /** Starts the watch, then reads the newest page of history. */
  open(): void {
    void this.watch();
    // Whoever opened a chat (New companion, a worker in the list) types next.
    this.composer.focus();
  }

  close(): void {
    this.abort.abort();
  }

  private async watch(): Promise<void> {
    const signal = this.abort.signal;
    let attempt = 0;
    let loaded = false;
    /**
     * The Backend wants its token: not a lost connection. The chat says so (the
     * sidebar asks for the token) and keeps trying; the next try sends the token.
     */
    let refused = false;
    while (!signal.aborted) {
      // A hidden tab holds no connection (visibility.ts): it resumes from its cursor once shown.
      await whenVisible(signal);
      if (signal.aborted) return;
      const connection = untilHidden(signal);
      try {
        const request = { worker: this.ref, afterCursor: this.cursor };
        for await (const message of this.api.observation.watchWorker(request, { signal: connection.signal })) {
          attempt = 0;
          this.banner.hidden = true;
          if (refused) this.showError(undefined);
          refused = false;
          this.onMessage(message);
          if (!loaded) {
            loaded = true;
            await this.loadTail();
          }
        }
        // The server ended the stream cleanly: the Backend is closing, so reconnect, shown as one. (A
        // deleted worker's watch ends with NOT_FOUND instead, handled below.)
      } catch (error) {
        if (signal.aborted) return;
        if (connection.signal.aborted) continue;
        if (cursorLost(error)) {
          // Start again from a fresh snapshot and the newest page: what is shown may miss entries
          // (those between it and the new tail) or hold entries the worker no longer has.
          // The tail and the cut runs are read again.
          this.cursor = "";
          loaded = false;
          this.log.clear();
          this.runLastSeq.clear();
          this.runs = new RunStatuses(this.api, this.ref, this.abort.signal);
          this.hasOlder = false;
          continue;
        }
        const reason = reasonOf(error);
        if (reason === ErrorReason.NOT_FOUND) {
          // Deleted while watched (the watch's end says so), or never there: nothing to reconnect to, nothing to send to.
          // Which of the two, the header and the note say alike: only a worker this chat has seen can be "deleted".
          this.banner.hidden = true;
          this.header.showGone(loaded ? "deleted" : "not found");
          this.composer.close(loaded ? DELETED_WORKER : notFoundWorker(this.ref));
          return;
        }
        refused = reason === ErrorReason.UNAUTHENTICATED;
        if (refused) this.showError(describeError(error));
      } finally {
        connection.dispose();
      }
      if (signal.aborted) return;
      this.banner.hidden = refused;
      const delay = Math.min(5_000, 250 * 2 ** attempt) * (0.5 + Math.random() / 2);
      attempt++;
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }

  private onMessage(message: WatchWorkerResponse): void {
    this.raw.record(message);
    if (message.snapshot) {
      const snapshot = message.snapshot;
      if (snapshot.worker) this.setWorker(snapshot.worker);
      this.setActiveRun(snapshot.activeRun);
      // The snapshot's partial blocks replace ours: deltas missed while disconnected are in them.
      this.live.replaceAll(snapshot.inFlight);
      // Only a fresh watch starts at the snapshot. A resumed one keeps its cursor until the replayed
      // events behind the snapshot arrive: cut before them, it must ask for them again, not skip them.
      if (snapshot.cursor && !this.cursor) this.cursor = snapshot.cursor;
    }
    for (const event of message.events) {
      this.onEvent(event);
      if (event.cursor) this.cursor = event.cursor;
    }
    if (message.heartbeat?.cursor) this.cursor = message.heartbeat.cursor;
  }

  private onEvent(event: WorkerEvent): void {
    const kind = event.kind;
    switch (kind.case) {
      case "workerChanged":
        this.setWorker(kind.value);
        break;
      case "runChanged":
        this.onRun(kind.value);
        break;
      case "transcriptAppended":
        this.live.drop(kind.value.blockId);
        this.putEntry(kind.value);
        break;
      case "textDelta":
        this.live.append(kind.value.runId, kind.value.blockId, InFlightBlockKind.TEXT, kind.value.text);
        break;
      case "reasoningDelta":
        this.live.append(kind.value.runId, kind.value.blockId, InFlightBlockKind.REASONING, kind.value.text);
        break;
      case "toolCallDelta":
        this.live.append(kind.value.runId, kind.value.blockId, InFlightBlockKind.TOOL_CALL, kind.value.argumentsDelta, kind.value.toolName);
        break;
      case "blockDiscarded":
        this.live.drop(kind.value.blockId);
        break;
      default:
        break;
    }
  }

  private async loadTail(): Promise<void> {
    const runs = this.runs;
    try {
      const page = await this.api.observation.readTranscript({ worker: this.ref, limit: PAGE }, { signal: this.abort.signal });
      await runs.cover(page.entries.map((entry) => entry.runId));
      if (runs !== this.runs) return;
      this.hasOlder = page.hasMore;
      for (const entry of page.entries) this.putEntry(entry);
      this.scroll.follow();
      this.queueFrame();
      this.fillView();
    } catch (error) {
      if (!this.abort.signal.aborted) this.showError(describeError(error));
    }
  }

  /** The page before the oldest entry shown, keeping what the reader looks at in place. */
  private async loadOlder(): Promise<void> {
    const first = this.log.first();
    const runs = this.runs;
    if (!this.hasOlder || this.loadingOlder === runs || first === undefined) return;
    this.loadingOlder = runs;
    try {
      const page = await this.api.observation.readTranscript(
        { worker: this.ref, position: { case: "beforeSeq", value: BigInt(Math.floor(first)) }, limit: PAGE },
        { signal: this.abort.signal },
      );
      if (runs !== this.runs) return;
      await runs.cover(page.entries.map((entry) => entry.runId));
      if (runs !== this.runs) return;
      this.scroll.keepingPosition(() => {
        for (const entry of page.entries) this.putEntry(entry);
      });
      this.hasOlder = page.hasMore;
    } catch (error) {
      // A page asked for before a re-sync fails as silently as it arrives: the log it was for is gone.
      if (!this.abort.signal.aborted && runs === this.runs) this.showError(describeError(error));
      return;
    } finally {
      if (this.loadingOlder === runs) this.loadingOlder = undefined;
    }
    this.fillView();
  }

  /**
   * Reads the next older page while what is shown does not fill the view:
   * with nothing to scroll, no scroll event comes to ask for it, and a tall
   * window showing one page of short entries could never reach the rest.
   */
  private fillView(): void {
    if (this.hasOlder && !this.scroll.overflows()) void this.loadOlder();
  }

  private putEntry(entry: TranscriptEntry): void {
    const seq = Number(entry.seq);
    this.log.put(seq, renderEntry(entry));
    // At or after the last: a run's last entry read again after it was trimmed brings its mark back.
    if (entry.runId && seq >= (this.runLastSeq.get(entry.runId) ?? -1)) {
      this.runLastSeq.set(entry.runId, seq);
      this.placeCutMark(entry.runId);
    }
    this.queueFrame();
  }

  /** The mark after a cut run's last entry: without it, a run interrupted before it committed anything left the question unanswered. */
  private placeCutMark(runId: string): void {
    const last = this.runLastSeq.get(runId);
    const status = this.runs.cut(runId);
    if (status === undefined || last === undefined) return;
    for (const key of [...this.log.root.querySelectorAll<HTMLElement>(`[data-run="${CSS.escape(runId)}"]`)].map((e) =>
      Number(e.dataset["key"]),
    )) {
      this.log.remove(key);
    }
    const key = last + 0.5;
    const [name, text] =
      status === RunStatus.INTERRUPTED
        ? ["interrupted", "interrupted: the server stopped before the answer was finished"]
        : ["stopped", "stopped"];
    this.log.put(key, h("div", { class: name, "data-run": runId, "data-key": String(key) }, text));
  }

  private onRun(run: Run): void {
    if (this.runs.note(run)) this.placeCutMark(run.runId);
    const ended = run.status >= RunStatus.COMPLETED;
    // As in the runtime's snapshot: an ended run has nothing in flight. A block neither committed
    // nor discarded (a tool call cut by Stop) would otherwise stay on screen as streaming.
    if (ended) this.live.dropRun(run.runId);
    if (ended && this.activeRun?.runId === run.runId) this.setActiveRun(undefined);
    else if (!ended) this.setActiveRun(run);
  }

  private setActiveRun(run: Run | undefined): void {
    this.activeRun = run;
    this.stopButton.hidden = run === undefined;
    this.header.showRun(run);
    this.approval.show(run);
    if (run === undefined && this.errorUntilIdle) this.showError(undefined);
  }

  private setWorker(worker: Worker): void {
    this.header.showWorker(worker);
    this.approval.nameWorker(worker.displayName || this.ref.workerId);
    const ended = endedText(worker);
    this.composer.close(ended === undefined ? undefined : { note: ended, placeholder: "This worker takes no more messages." });
    // An ended worker runs nothing again: a provider hint would send the reader after the wrong cure.
    const notConnected = ended === undefined && worker.connectivity?.state === ConnectivityState.NOT_CONNECTED;
    this.connectivity.hidden = !notConnected;
    const reason = worker.connectivity?.reason;
    this.connectivity.textContent = !notConnected
      ? ""
      : reason
        ? `Not connected: ${reason}, then restart npm start.`
        : `Not connected. ${PROVIDER_HINT}`;
    if (!worker.activeRunId && this.activeRun) this.setActiveRun(undefined);
  }

  /**
   * The DOM work that can wait for the next frame, done once per frame:
   * blocks whose deltas arrived since (markdown is re-parsed, so not per
   * token), then the scroll to the bottom when the view follows the output.
   */
  private queueFrame(): void {
    if (this.frameQueued) return;
    this.frameQueued = true;
    requestAnimationFrame(() => {
      this.frameQueued = false;
      this.live.renderDirty();
      if (this.scroll.following) {
        // Trimmed only while following, so never under a reader's eyes; what left is history again.
        if (this.log.dropOldest(MAX_SHOWN) > 0) this.hasOlder = true;
        this.scroll.scrollToBottom();
      }
    });
  }

  private async stop(): Promise<void> {
    const run = this.activeRun;
    if (!run) return;
    try {
      await this.api.interaction.cancelRun({ worker: this.ref, runId: run.runId });
    } catch (error) {
      this.showError(describeError(error));
    }
  }

  /**
   * Shows an error, or clears it (`undefined`). A busy refusal (`busyWith`,
   * the run it names) stands only while a run is in progress: it is cleared
   * when the chat goes idle, and not shown at all when it reached the page
   * after the watch told that its run had ended (or, naming none, while no
   * run is in progress), since it would then stand under an idle header.
   */
  private showError(text: string | undefined, busyWith?: string): void {
    if (text !== undefined && busyWith !== undefined && (busyWith === "" ? this.activeRun === undefined : this.runs.ended(busyWith))) {
      text = undefined;
    }
    this.errorUntilIdle = text !== undefined && busyWith !== undefined;
    this.error.hidden = text === undefined;
    this.error.textContent = text ?? "";
  }
}
