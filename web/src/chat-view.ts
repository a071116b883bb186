import { create, toJsonString } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { ErrorDetailSchema, ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { type InFlightBlock, InFlightBlockKind, type WorkerEvent } from "../../gen/worker_runtime/v1/events_pb.js";
import { ApprovalDecision } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import { type Run, RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import type { TranscriptEntry } from "../../gen/worker_runtime/v1/transcript_pb.js";
import { BusyPolicy, type WorkerRef, WorkerRefSchema } from "../../gen/worker_runtime/v1/common_pb.js";
import { ConnectivityState, type Worker } from "../../gen/worker_runtime/v1/worker_pb.js";
import { type WatchWorkerResponse, WatchWorkerResponseSchema } from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import type { Api } from "./api.js";
import { describeError, PROVIDER_HINT, reasonOf } from "./describe-error.js";
import { h } from "./dom.js";
import { renderMarkdown } from "./markdown.js";
import { OrderedLog } from "./ordered-log.js";
import { StreamingMarkdown } from "./streaming-markdown.js";
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
/** Raw events kept in the debug view. */
const RAW_LIMIT = 200;

interface LiveBlock {
  block: InFlightBlock;
  element: HTMLElement;
  body: HTMLElement;
  /** A text block's markdown, re-rendered from its growing end only. */
  markdown?: StreamingMarkdown;
}

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
  private readonly scroller: HTMLElement;
  private readonly live: HTMLElement;
  private readonly banner: HTMLElement;
  private readonly error: HTMLElement;
  private readonly status: HTMLElement;
  private readonly title: HTMLElement;
  private readonly connectivity: HTMLElement;
  private readonly approval: HTMLElement;
  private readonly stopButton: HTMLButtonElement;
  private readonly sendButton: HTMLButtonElement;
  private readonly input: HTMLTextAreaElement;
  private readonly raw: HTMLElement;
  private readonly rawView: HTMLDetailsElement;
  /** The last RAW_LIMIT watch messages, shown as JSON only while the raw view is open. */
  private readonly rawMessages: WatchWorkerResponse[] = [];
  private readonly blocks = new Map<string, LiveBlock>();
  /** Highest committed seq per run, to place a "stopped" or "interrupted" mark after it. */
  private readonly runLastSeq = new Map<string, number>();
  /** Runs that ended without finishing: CANCELLED (Stop) or INTERRUPTED (the runtime restarted). */
  private readonly cutRuns = new Map<string, RunStatus>();
  private cursor = "";
  private activeRun: Run | undefined;
  private hasOlder = false;
  private loadingOlder = false;
  /**
   * A SendInput is in flight: a second Enter meanwhile is ignored. Sent at
   * once, it reached the runtime while the first run was starting and came
   * back WORKER_BUSY, a false "busy" error for one message typed once.
   */
  private sending = false;
  /**
   * Where the view last scrolled itself to the bottom; Infinity once the
   * reader scrolled up, when the view stops following the newest output
   * (see {@link following}). Kept from scroll events (where layout is fresh)
   * so that no event handler reads layout: measuring before and after each
   * change forced two synchronous layouts of the whole log per event, one of
   * them in front of every first token. The view's own scroll raises its
   * event a frame later, maybe after more output made the log taller: a
   * position at or below this one is not the reader scrolling up.
   */
  private scrolledTo = 0;
  private frameQueued = false;
  private readonly dirty = new Set<LiveBlock>();

  constructor(
    private readonly api: Api,
    runtimeId: string,
    workerId: string,
  ) {
    this.ref = create(WorkerRefSchema, { runtimeId, workerId });
    this.banner = h("div", { class: "banner", role: "status", hidden: true }, "Connection lost. Reconnecting…");
    this.error = h("div", { class: "error", role: "alert", hidden: true });
    this.status = h("span", { class: "status" });
    this.title = h("h2", {}, workerId);
    this.connectivity = h("div", { class: "not-connected", hidden: true });
    // Announced as it appears: the run waits for the reader, who may be looking (or listening) elsewhere.
    this.approval = h("div", {
      class: "approval",
      role: "region",
      "aria-label": "Approval needed",
      "aria-live": "assertive",
      hidden: true,
    });
    // Committed entries only: a screen reader reads each once. The streaming copy (this.live) is
    // outside the region, since it is re-rendered every frame.
    const logRoot = h("div", { class: "log", role: "log", "aria-live": "polite", "aria-label": "Conversation" });
    this.log = new OrderedLog(logRoot);
    this.live = h("div", { class: "live" });
    this.scroller = h("div", { class: "scroller" }, logRoot, this.live);
    this.scroller.addEventListener("scroll", () => {
      if (this.scroller.scrollTop < this.scrolledTo && !this.nearBottom()) this.scrolledTo = Number.POSITIVE_INFINITY;
      else if (!this.following) this.scrolledTo = this.scroller.scrollTop;
      if (this.scroller.scrollTop < 80) void this.loadOlder();
    });
    this.stopButton = h("button", { class: "stop", type: "button", hidden: true, onclick: () => void this.stop() }, "Stop");
    this.input = h("textarea", {
      class: "input",
      rows: "3",
      "aria-label": "Message",
      placeholder: "Message the companion… (Enter sends, Shift+Enter for a new line)",
    });
    this.sendButton = h("button", { class: "send", type: "submit" }, "Send");
    this.input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey) {
        event.preventDefault();
        void this.send();
      }
    });
    const form = h(
      "form",
      {
        class: "composer",
        onsubmit: (event) => {
          event.preventDefault();
          void this.send();
        },
      },
      this.input,
      h("div", { class: "actions" }, this.sendButton, this.stopButton),
    );
    this.raw = h("pre", { class: "raw-events" });
    this.rawView = h("details", { class: "raw" }, h("summary", {}, "Raw events"), this.raw);
    this.element = h(
      "section",
      { class: "chat" },
      h("header", { class: "chat-header" }, this.title, this.status),
      this.banner,
      this.connectivity,
      this.scroller,
      this.approval,
      this.error,
      form,
      this.rawView,
    );
    this.rawView.addEventListener("toggle", () => this.renderRaw());
  }

  /** Starts the watch, then reads the newest page of history. */
  open(): void {
    void this.watch();
    // Whoever opened a chat (New companion, a worker in the list) types next.
    this.input.focus({ preventScroll: true });
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
          this.cutRuns.clear();
          this.hasOlder = false;
          continue;
        }
        const reason = reasonOf(error);
        if (reason === ErrorReason.NOT_FOUND) {
          this.showError(describeError(error));
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
    this.recordRaw(message);
    if (message.snapshot) {
      const snapshot = message.snapshot;
      if (snapshot.worker) this.setWorker(snapshot.worker);
      this.setActiveRun(snapshot.activeRun);
      // The snapshot's partial blocks replace ours: deltas missed while disconnected are in them.
      for (const key of [...this.blocks.keys()]) this.dropBlock(key);
      for (const block of snapshot.inFlight) this.liveBlock(block);
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
        this.dropBlock(kind.value.blockId);
        this.putEntry(kind.value);
        break;
      case "textDelta":
        this.appendDelta(kind.value.runId, kind.value.blockId, InFlightBlockKind.TEXT, kind.value.text);
        break;
      case "reasoningDelta":
        this.appendDelta(kind.value.runId, kind.value.blockId, InFlightBlockKind.REASONING, kind.value.text);
        break;
      case "toolCallDelta":
        this.appendDelta(kind.value.runId, kind.value.blockId, InFlightBlockKind.TOOL_CALL, kind.value.argumentsDelta, kind.value.toolName);
        break;
      case "blockDiscarded":
        this.dropBlock(kind.value.blockId);
        break;
      default:
        break;
    }
  }

  private async loadTail(): Promise<void> {
    try {
      const page = await this.api.observation.readTranscript({ worker: this.ref, limit: PAGE }, { signal: this.abort.signal });
      const cut = await Promise.all(
        [RunStatus.CANCELLED, RunStatus.INTERRUPTED].map((status) =>
          this.api.interaction.listRuns({ worker: this.ref, status, pageSize: 100 }, { signal: this.abort.signal }),
        ),
      );
      for (const run of cut.flatMap((list) => list.runs)) this.cutRuns.set(run.runId, run.status);
      this.hasOlder = page.hasMore;
      for (const entry of page.entries) this.putEntry(entry);
      this.scrolledTo = 0;
      this.queueFrame();
    } catch (error) {
      if (!this.abort.signal.aborted) this.showError(describeError(error));
    }
  }

  /** The page before the oldest entry shown, keeping what the reader looks at in place. */
  private async loadOlder(): Promise<void> {
    const first = this.log.first();
    if (!this.hasOlder || this.loadingOlder || first === undefined) return;
    this.loadingOlder = true;
    try {
      const page = await this.api.observation.readTranscript(
        { worker: this.ref, position: { case: "beforeSeq", value: BigInt(Math.floor(first)) }, limit: PAGE },
        { signal: this.abort.signal },
      );
      const before = this.scroller.scrollHeight;
      for (const entry of page.entries) this.putEntry(entry);
      this.scroller.scrollTop += this.scroller.scrollHeight - before;
      this.hasOlder = page.hasMore;
    } catch (error) {
      if (!this.abort.signal.aborted) this.showError(describeError(error));
    } finally {
      this.loadingOlder = false;
    }
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
    const status = this.cutRuns.get(runId);
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
    if ((run.status === RunStatus.CANCELLED || run.status === RunStatus.INTERRUPTED) && !this.cutRuns.has(run.runId)) {
      this.cutRuns.set(run.runId, run.status);
      this.placeCutMark(run.runId);
    }
    const ended = run.status >= RunStatus.COMPLETED;
    // As in the runtime's snapshot: an ended run has nothing in flight. A block neither committed
    // nor discarded (a tool call cut by Stop) would otherwise stay on screen as streaming.
    if (ended) for (const [key, live] of this.blocks) if (live.block.runId === run.runId) this.dropBlock(key);
    if (ended && this.activeRun?.runId === run.runId) this.setActiveRun(undefined);
    else if (!ended) this.setActiveRun(run);
  }

  private setActiveRun(run: Run | undefined): void {
    this.activeRun = run;
    this.stopButton.hidden = run === undefined;
    const pending = run?.status === RunStatus.AWAITING_APPROVAL ? run.pendingApproval : undefined;
    this.approval.hidden = pending === undefined;
    this.approval.replaceChildren();
    if (run && pending) {
      const decide = (decision: ApprovalDecision) => () => void this.resolveApproval(run.runId, pending.toolCallId, decision);
      this.approval.append(
        h("p", {}, "The companion wants to run ", h("code", {}, pending.toolName), ":"),
        h("pre", {}, pending.argumentsJson),
        h("button", { class: "approve", type: "button", onclick: decide(ApprovalDecision.APPROVE) }, "Approve"),
        h("button", { class: "reject", type: "button", onclick: decide(ApprovalDecision.REJECT) }, "Reject"),
      );
    }
  }

  private setWorker(worker: Worker): void {
    this.status.textContent = workerStatusText(worker);
    this.title.textContent = worker.displayName || worker.ref?.workerId || "";
    const notConnected = worker.connectivity?.state === ConnectivityState.NOT_CONNECTED;
    this.connectivity.hidden = !notConnected;
    const reason = worker.connectivity?.reason;
    this.connectivity.textContent = !notConnected
      ? ""
      : reason
        ? `Not connected: ${reason}, then restart npm start.`
        : `Not connected. ${PROVIDER_HINT}`;
    if (!worker.activeRunId && this.activeRun) this.setActiveRun(undefined);
  }

  private appendDelta(runId: string, blockId: string, kind: InFlightBlockKind, text: string, toolName = ""): void {
    const existing = this.blocks.get(blockId);
    if (existing) {
      existing.block.text += text;
      if (toolName) existing.block.toolName = toolName;
      this.dirty.add(existing);
      this.queueFrame();
      return;
    }
    this.liveBlock({ $typeName: "worker_runtime.v1.InFlightBlock", runId, blockId, kind, text, toolCallId: "", toolName });
  }

  private liveBlock(block: InFlightBlock): void {
    const body = h("div", { class: "body" });
    const element =
      block.kind === InFlightBlockKind.REASONING
        ? h("details", { class: "entry reasoning streaming" }, h("summary", {}, "Reasoning…"), body)
        : block.kind === InFlightBlockKind.TOOL_CALL
          ? h("div", { class: "entry tool-call streaming" }, h("div", { class: "tool-name" }, `Tool call: ${block.toolName}`), body)
          : h("div", { class: "entry assistant streaming" }, body);
    const live: LiveBlock = { block, element, body };
    if (block.kind === InFlightBlockKind.TEXT) live.markdown = new StreamingMarkdown(body);
    this.blocks.set(block.blockId, live);
    // A new block's first text shows at once; later deltas wait for the frame.
    this.live.append(element);
    this.renderBlock(live);
    this.queueFrame();
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
      for (const block of this.dirty) this.renderBlock(block);
      this.dirty.clear();
      if (this.following) {
        // Trimmed only while following, so never under a reader's eyes; what left is history again.
        if (this.log.dropOldest(MAX_SHOWN) > 0) this.hasOlder = true;
        this.scrollToBottom();
      }
    });
  }

  private renderBlock(live: LiveBlock): void {
    if (live.markdown) live.markdown.update(live.block.text);
    else if (live.block.kind === InFlightBlockKind.TOOL_CALL) live.body.replaceChildren(h("pre", {}, live.block.text));
    else live.body.textContent = live.block.text;
  }

  private dropBlock(blockId: string): void {
    const live = this.blocks.get(blockId);
    if (!live) return;
    live.element.remove();
    this.dirty.delete(live);
    this.blocks.delete(blockId);
  }

  private async send(): Promise<void> {
    const text = this.input.value.trim();
    if (!text || this.sending) return;
    this.showError(undefined);
    this.sending = true;
    this.sendButton.disabled = true;
    try {
      await this.api.interaction.sendInput({
        worker: this.ref,
        input: { text },
        busyPolicy: BusyPolicy.REJECT,
        requestId: crypto.randomUUID(),
      });
      this.input.value = "";
    } catch (error) {
      this.showError(describeError(error));
    } finally {
      this.sending = false;
      this.sendButton.disabled = false;
    }
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

  private async resolveApproval(runId: string, toolCallId: string, decision: ApprovalDecision): Promise<void> {
    try {
      await this.api.interaction.resolveApproval({ worker: this.ref, runId, toolCallId, decision });
      this.approval.hidden = true;
    } catch (error) {
      this.showError(describeError(error));
    }
  }

  private showError(text: string | undefined): void {
    this.error.hidden = text === undefined;
    this.error.textContent = text ?? "";
  }

  /**
   * Keeps the message for the raw view (so opening it shows what came
   * before), serialized to JSON only while the view is open: serializing
   * every message up front sat in front of rendering each streamed token.
   */
  private recordRaw(message: WatchWorkerResponse): void {
    this.rawMessages.push(message);
    if (this.rawMessages.length > RAW_LIMIT) this.rawMessages.shift();
    if (!this.rawView.open) return;
    this.raw.append(rawLine(message));
    while (this.raw.childElementCount > RAW_LIMIT) this.raw.firstElementChild?.remove();
  }

  /** Fills the raw view when it opens; empties it when it closes. */
  private renderRaw(): void {
    this.raw.replaceChildren(...(this.rawView.open ? this.rawMessages.map(rawLine) : []));
  }

  /** Whether the view follows the newest output: at the bottom, or where it last put itself. */
  private get following(): boolean {
    return this.scrolledTo !== Number.POSITIVE_INFINITY;
  }

  private nearBottom(): boolean {
    return this.scroller.scrollHeight - this.scroller.scrollTop - this.scroller.clientHeight < 60;
  }

  private scrollToBottom(): void {
    this.scroller.scrollTop = this.scroller.scrollHeight;
    this.scrolledTo = this.scroller.scrollTop;
  }
}

function renderEntry(entry: TranscriptEntry): HTMLElement {
  const content = entry.content;
  const seq = String(entry.seq);
  switch (content.case) {
    case "userMessage":
      return h("div", { class: "entry user", "data-seq": seq }, content.value.text);
    case "assistantMessage": {
      const body = h("div", { class: "body" });
      renderMarkdown(body, content.value.text);
      return h("div", { class: "entry assistant", "data-seq": seq }, body);
    }
    case "reasoning":
      return h(
        "details",
        { class: "entry reasoning", "data-seq": seq },
        h("summary", {}, "Reasoning"),
        h("div", { class: "body" }, content.value.text),
      );
    case "toolCall":
      return h(
        "details",
        { class: "entry tool-call", "data-seq": seq },
        h("summary", {}, `Tool call: ${content.value.toolName}`),
        h("pre", {}, content.value.argumentsJson),
      );
    case "toolResult":
      return h(
        "details",
        { class: `entry tool-result${content.value.isError ? " failed" : ""}`, "data-seq": seq },
        h(
          "summary",
          {},
          `${content.value.isError ? "Failed" : "Result of"} ${content.value.toolName}${content.value.truncated ? " (truncated)" : ""}`,
        ),
        h("pre", {}, content.value.output),
      );
    case "notice":
      return h("div", { class: "entry notice", "data-seq": seq }, content.value.message);
    default:
      return h("div", { class: "entry", "data-seq": seq });
  }
}

/**
 * The watch's cursor can no longer be resumed from, only a fresh snapshot can
 * help: older than the retained events (CURSOR_EXPIRED, OUT_OF_RANGE), of
 * another store (CURSOR_FOREIGN), or ahead of the worker's events, as after
 * the data dir was restored from a backup (INVALID_ARGUMENT on after_cursor).
 * Retrying it would show "Reconnecting…" forever.
 */
function cursorLost(error: unknown): boolean {
  if (!(error instanceof ConnectError)) return false;
  const detail = error.findDetails(ErrorDetailSchema)[0];
  return (
    error.code === Code.OutOfRange ||
    detail?.reason === ErrorReason.CURSOR_EXPIRED ||
    detail?.reason === ErrorReason.CURSOR_FOREIGN ||
    (detail?.reason === ErrorReason.INVALID_ARGUMENT && detail.metadata["field"] === "after_cursor")
  );
}

/** "idle", "running", … for the header; status words rather than enum names. */
export function workerStatusText(worker: Worker): string {
  const status = ["unknown", "idle", "running", "stopped", "failed"][worker.status] ?? "unknown";
  const connected = worker.connectivity?.state === ConnectivityState.NOT_CONNECTED ? " · not connected" : "";
  return `${status}${connected}`;
}

function rawLine(message: WatchWorkerResponse): HTMLElement {
  return h("div", {}, toJsonString(WatchWorkerResponseSchema, message));
}
