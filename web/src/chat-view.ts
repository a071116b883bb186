import { create } from "@bufbuild/protobuf";
import { InFlightBlockKind, type WorkerEvent } from "../../gen/worker_runtime/v1/events_pb.js";
import { type Run, RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { type WorkerRef, WorkerRefSchema } from "../../gen/worker_runtime/v1/common_pb.js";
import { ConnectivityState, type Worker } from "../../gen/worker_runtime/v1/worker_pb.js";
import type { Api } from "./api.js";
import { ApprovalPanel } from "./approval-panel.js";
import { ChatHeader } from "./chat-header.js";
import { Composer } from "./composer.js";
import { Conversation } from "./conversation.js";
import { DELETED_WORKER, describeError, endedText, notFoundWorker, PROVIDER_HINT, UNREACHABLE_TEXT } from "./describe-error.js";
import { h } from "./dom.js";
import { RawEventView } from "./raw-event-view.js";
import { RetryNote } from "./retry-note.js";
import { watchWorker } from "./worker-watch.js";

/**
 * One worker's conversation: its header, the conversation (history and the
 * live part, fed by the watch, worker-watch.ts), the composer, Stop,
 * approvals and the raw event view, and what the watch says of the worker
 * and its active run, told to each of them.
 */
export class ChatView {
  readonly element: HTMLElement;
  private readonly ref: WorkerRef;
  private readonly abort = new AbortController();
  private readonly conversation: Conversation;
  private readonly banner: HTMLElement;
  private readonly error: HTMLElement;
  private readonly header: ChatHeader;
  private readonly connectivity: HTMLElement;
  /** Says a failed model request waits to be retried. */
  private readonly retry: RetryNote;
  private readonly approval: ApprovalPanel;
  private readonly stopButton: HTMLButtonElement;
  /** The message box, closed from the moment the worker is known to take no more messages (stopped, failed, deleted). */
  private readonly composer: Composer;
  private readonly raw = new RawEventView();
  private activeRun: Run | undefined;
  /**
   * While the error shown is a busy refusal: the run it is about ("" when
   * it names none). It leaves when that run ends (any run, for one naming
   * none) or no run is in progress; it stood under an idle header once the
   * answer had ended, or beside the next run's answer.
   */
  private busyRefusal: string | undefined;

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
    this.banner = h("div", { class: "banner", role: "status", hidden: true }, "Connection lost. Reconnecting…");
    this.error = h("div", { class: "error", role: "alert", hidden: true });
    this.header = new ChatHeader(workerId, onWorker);
    this.connectivity = h("div", { class: "not-connected", role: "status", hidden: true });
    this.retry = new RetryNote();
    // A keyboard user who answered is back in the message box, not on the page's top.
    this.approval = new ApprovalPanel(
      api,
      this.ref,
      (text) => this.showError(text),
      () => this.composer.focus(),
    );
    this.conversation = new Conversation(api, this.ref, this.abort.signal, (text) => this.showError(text));
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
      this.conversation.element,
      this.approval.element,
      this.retry.element,
      this.error,
      this.composer.note,
      this.composer.form,
      this.raw.element,
    );
  }

  /** Starts the watch, then reads the newest page of history. */
  open(): void {
    void watchWorker(this.api, this.ref, this.abort.signal, {
      message: (message) => this.raw.record(message),
      snapshot: (snapshot) => {
        if (snapshot.worker) this.setWorker(snapshot.worker);
        this.setActiveRun(snapshot.activeRun);
        this.conversation.replaceLive(snapshot.inFlight);
        // Whether a retry is still waiting the snapshot does not say: the next retry_scheduled will.
        this.retry.clear();
      },
      event: (event) => this.onEvent(event),
      started: () => this.conversation.loadTail(),
      resync: () => this.conversation.reset(),
      reconnecting: (lost) => {
        this.banner.hidden = !lost;
        // Reached again: a call's "Cannot reach the console's server" no longer holds, and sent the reader to restart what runs.
        if (!lost && this.error.textContent === UNREACHABLE_TEXT) this.showError(undefined);
      },
      refused: (text) => this.showError(text),
      gone: (seen) => {
        // Which of the two, the header and the note say alike.
        this.header.showGone(seen ? "deleted" : "not found");
        this.composer.close(seen ? DELETED_WORKER : notFoundWorker(this.ref));
      },
    });
    // Whoever opened a chat (New companion, a worker in the list) types next.
    this.composer.focus();
  }

  close(): void {
    this.abort.abort();
  }

  private onEvent(event: WorkerEvent): void {
    const kind = event.kind;
    // Output of the run after a failed model request: the retry got through.
    if (
      kind.case === "textDelta" ||
      kind.case === "reasoningDelta" ||
      kind.case === "toolCallDelta" ||
      kind.case === "transcriptAppended"
    ) {
      this.retry.clear(kind.value.runId);
    }
    switch (kind.case) {
      case "workerChanged":
        this.setWorker(kind.value);
        break;
      case "runChanged":
        this.onRun(kind.value);
        break;
      case "transcriptAppended":
        this.conversation.commit(kind.value);
        break;
      case "textDelta":
        this.conversation.delta(kind.value.runId, kind.value.blockId, InFlightBlockKind.TEXT, kind.value.text);
        break;
      case "reasoningDelta":
        this.conversation.delta(kind.value.runId, kind.value.blockId, InFlightBlockKind.REASONING, kind.value.text);
        break;
      case "toolCallDelta":
        this.conversation.delta(
          kind.value.runId,
          kind.value.blockId,
          InFlightBlockKind.TOOL_CALL,
          kind.value.argumentsDelta,
          kind.value.toolName,
        );
        break;
      case "blockDiscarded":
        this.conversation.discard(kind.value.blockId);
        break;
      case "retryScheduled":
        this.retry.show(kind.value.runId, kind.value.retry);
        break;
      default:
        break;
    }
  }

  private onRun(run: Run): void {
    this.conversation.noteRun(run);
    const ended = run.status >= RunStatus.COMPLETED;
    if (ended) this.retry.clear(run.runId);
    if (ended && this.activeRun?.runId === run.runId) this.setActiveRun(undefined);
    else if (!ended) this.setActiveRun(run);
    // Another run may be in progress by now (one queued behind it): the refusal was about this one.
    if (ended && (this.busyRefusal === "" || this.busyRefusal === run.runId)) this.showError(undefined);
  }

  private setActiveRun(run: Run | undefined): void {
    this.activeRun = run;
    // Stop leaves with the run: had it the focus (the reader pressed it), the focus goes back to the box, not to the page's top.
    const stopFocused = document.activeElement === this.stopButton;
    this.stopButton.hidden = run === undefined;
    if (stopFocused && run === undefined) this.composer.focus();
    this.header.showRun(run);
    this.approval.show(run);
    if (run === undefined && this.busyRefusal !== undefined) this.showError(undefined);
  }

  private setWorker(worker: Worker): void {
    this.header.showWorker(worker);
    const name = worker.displayName || this.ref.workerId;
    this.approval.nameWorker(name);
    this.composer.nameWorker(name);
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
   * the run it names, "" if none) stands only while its run may be in
   * progress (see {@link busyRefusal}), and is not shown at all when it
   * reached the page after the watch told that the run it names had ended,
   * since it would then stand under an idle header. One naming no run is
   * shown even while the chat knows no run in progress: the server has just
   * said one is, and the watch may not have told of it yet.
   */
  private showError(text: string | undefined, busyWith?: string): void {
    const late = busyWith !== undefined && busyWith !== "" && this.conversation.runEnded(busyWith);
    const shown = late ? undefined : text;
    this.busyRefusal = shown !== undefined ? busyWith : undefined;
    this.error.hidden = shown === undefined;
    this.error.textContent = shown ?? "";
  }
}
