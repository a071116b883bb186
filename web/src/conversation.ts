import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import type { InFlightBlock, InFlightBlockKind } from "../../gen/worker_runtime/v1/events_pb.js";
import { type Run, RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import type { TranscriptEntry } from "../../gen/worker_runtime/v1/transcript_pb.js";
import type { ReadTranscriptResponse } from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import type { Api } from "./api.js";
import { describeError } from "./describe-error.js";
import { h } from "./dom.js";
import { FollowScroll } from "./follow-scroll.js";
import { LiveBlocks } from "./live-blocks.js";
import { OrderedLog } from "./ordered-log.js";
import { RunStatuses } from "./run-statuses.js";
import { renderEntry } from "./transcript-entry.js";

/** Entries per history page (ReadTranscript limit). */
const PAGE = 30;
/**
 * The most entries (and marks) the page holds: a chat left open for days
 * would otherwise grow its DOM, and the memory and layout it costs, for
 * ever, and so would reading a long history back to its start. While the
 * page follows the newest output the oldest leave (scrolling to the top
 * reads them again, a page at a time); while the reader pages back the
 * newest leave (scrolling down reads them again), and new output waits
 * below a reader who stands above the end of a full page.
 */
const MAX_SHOWN = 200;
/**
 * How many times one reading of older history asks for its page: a page
 * that arrives after the window moved is asked again for the new first
 * entry, but not for ever while new output keeps moving it.
 */
const OLDER_ASKS = 3;
/**
 * Where the readable history ends when the worker's stored history is
 * damaged (ReadTranscript's `cut`), in the console's words: the runtime's
 * message is written for API clients.
 */
const HISTORY_CUT_TEXT =
  "The rest of this conversation cannot be read: the worker's stored history is damaged from here on. " +
  "It is kept as it is; an operator can restore it from a backup, or delete the worker.";

/**
 * The chat's scrolling conversation: the committed entries (history read in
 * pages from ReadTranscript, newer ones as the watch tells them), a mark
 * after each run that ended cut, and the blocks still streaming below them.
 * The chat's watch feeds it; it knows nothing of the connection. The
 * scroller is a named, focusable region, so a keyboard user can scroll it
 * (arrows, Page Up/Down); where damage cut the readable history short, a
 * note after its last readable entry says so.
 */
export class Conversation {
  /** The scroller holding the log and the streaming blocks. */
  readonly element: HTMLElement;
  private readonly log: OrderedLog;
  private readonly scroll: FollowScroll;
  private readonly live: LiveBlocks;
  /** Highest committed seq per run, to place a "stopped" or "interrupted" mark after it. */
  private readonly runLastSeq = new Map<string, number>();
  /**
   * Which runs ended cut. Replaced on each re-sync from a fresh snapshot: a
   * history page asked for before one compares its instance with this and is
   * dropped, since the log it was to extend is gone (put under the new tail,
   * it showed older entries with a gap above them that nothing filled).
   */
  private runs: RunStatuses;
  private hasOlder = false;
  /** The instance of {@link runs} whose older page is being read. */
  private loadingOlder: RunStatuses | undefined;
  /**
   * While the reader reads history and the newest entries were dropped to
   * keep the page bounded: the newest seq still shown (undefined when the
   * newest are shown). Entries the watch commits after it wait in
   * {@link waiting} and are shown with the newer pages read as the reader
   * scrolls down, the streaming blocks hidden till then: shown at once they
   * would stand below a gap.
   */
  private shownThrough: number | undefined;
  /**
   * Entries committed while {@link shownThrough} is set (the newest
   * MAX_SHOWN): the last newer page is read at some moment, and what the
   * watch committed around that moment must not fall between the two.
   */
  private readonly waiting = new Map<number, TranscriptEntry>();
  /** The instance of {@link runs} whose newer page is being read. */
  private loadingNewer: RunStatuses | undefined;
  private frameQueued = false;

  /** `report` shows why a page of history could not be read. */
  constructor(
    private readonly api: Api,
    private readonly ref: WorkerRef,
    private readonly signal: AbortSignal,
    private readonly report: (text: string) => void,
  ) {
    this.runs = new RunStatuses(api, ref, signal);
    // Committed entries only: a screen reader reads each once. The streaming copy (this.live) is
    // outside the region, since it is re-rendered every frame.
    const logRoot = h("div", { class: "log", role: "log", "aria-live": "polite", "aria-label": "Conversation" });
    this.log = new OrderedLog(logRoot);
    this.live = new LiveBlocks(h("div", { class: "live" }), () => this.queueFrame());
    this.element = h(
      "div",
      { class: "scroller", tabindex: "0", role: "region", "aria-label": "Conversation history" },
      logRoot,
      this.live.element,
    );
    this.scroll = new FollowScroll(
      this.element,
      () => void this.loadOlder(),
      () => void this.loadNewer(),
    );
  }

  /**
   * Drops what is shown, for a fresh snapshot after the watch's cursor was
   * lost: it may miss entries (those between it and the new tail) or hold
   * entries the worker no longer has. The tail and the cut runs are read again.
   */
  reset(): void {
    this.log.clear();
    this.runLastSeq.clear();
    this.runs = new RunStatuses(this.api, this.ref, this.signal);
    this.hasOlder = false;
    this.showNewest();
  }

  /** The snapshot's partial blocks replace ours: deltas missed while disconnected are in them. */
  replaceLive(blocks: readonly InFlightBlock[]): void {
    this.live.replaceAll(blocks);
  }

  /** A delta of a block still streaming. */
  delta(runId: string, blockId: string, kind: InFlightBlockKind, text: string, toolName = ""): void {
    this.live.append(runId, blockId, kind, text, toolName);
  }

  /** A streaming block discarded (its entry will not come). */
  discard(blockId: string): void {
    this.live.drop(blockId);
  }

  /** An entry committed (transcript_appended): it takes the place of its streaming block. */
  commit(entry: TranscriptEntry): void {
    this.live.drop(entry.blockId);
    const seq = Number(entry.seq);
    const last = Math.floor(this.log.last() ?? 0);
    // A reader scrolled up in a full window: what comes waits below, as while history is read, and is read
    // again when scrolled to. Put, it grew the page past its bound for as long as they read (only following trims).
    if (this.shownThrough === undefined && !this.scroll.following && this.log.size >= MAX_SHOWN && seq > last) {
      this.windowThrough(last);
    }
    if (this.shownThrough === undefined || seq <= this.shownThrough) {
      this.putEntry(entry);
      return;
    }
    this.waiting.set(seq, entry);
    if (this.waiting.size > MAX_SHOWN) this.waiting.delete(Math.min(...this.waiting.keys()));
  }

  /** A run's change from the watch: its cut mark, and nothing left streaming once it ended. */
  noteRun(run: Run): void {
    if (this.runs.note(run)) this.placeCutMark(run.runId);
    // As in the runtime's snapshot: an ended run has nothing in flight. A block neither committed
    // nor discarded (a tool call cut by Stop) would otherwise stay on screen as streaming.
    if (run.status >= RunStatus.COMPLETED) this.live.dropRun(run.runId);
  }

  /** Whether the run is known to have ended. */
  runEnded(runId: string): boolean {
    return this.runs.ended(runId);
  }

  /** Reads the newest page of history (after the watch's first message, so nothing between is missed). */
  async loadTail(): Promise<void> {
    const runs = this.runs;
    try {
      const page = await this.api.observation.readTranscript({ worker: this.ref, limit: PAGE }, { signal: this.signal });
      await runs.cover(page.entries.map((entry) => entry.runId));
      if (runs !== this.runs) return;
      this.hasOlder = page.hasMore;
      for (const entry of page.entries) this.putEntry(entry);
      this.placeHistoryCut(page);
      this.scroll.follow();
      this.queueFrame();
      this.fillView();
    } catch (error) {
      if (!this.signal.aborted) this.report(describeError(error));
    }
  }

  /**
   * The page before the oldest entry shown, keeping what the reader looks at
   * in place. One at a time; a page that no longer fits (the window moved
   * while it was read: newer pages or new output trimmed its oldest entries)
   * is dropped, as put above the new first entry it would leave a gap, and
   * the page before the new first entry is asked for instead while the
   * reader still stands where older history is asked for (at the top, they
   * may scroll no more, and no scroll event would ask again). At most
   * {@link OLDER_ASKS} times: a window that keeps moving is left to the next
   * scroll.
   */
  private async loadOlder(): Promise<void> {
    const runs = this.runs;
    if (!this.hasOlder || this.loadingOlder === runs || this.log.first() === undefined) return;
    this.loadingOlder = runs;
    try {
      for (let asked = 0; asked < OLDER_ASKS; asked++) {
        const first = this.log.first();
        if (first === undefined || !this.hasOlder) return;
        const page = await this.api.observation.readTranscript(
          { worker: this.ref, position: { case: "beforeSeq", value: BigInt(Math.floor(first)) }, limit: PAGE },
          { signal: this.signal },
        );
        if (runs !== this.runs) return;
        await runs.cover(page.entries.map((entry) => entry.runId));
        if (runs !== this.runs) return;
        if (this.log.first() !== first) {
          if (this.scroll.wantsOlder()) continue;
          return;
        }
        // The reader went back down to the newest output meanwhile: put above, the page would push the newest out of
        // the bounded window under their eyes (and hide what streams). Asked for again when they scroll up.
        if (this.scroll.following && this.shownThrough === undefined && !this.scroll.wantsOlder()) return;
        this.scroll.keepingPosition(() => {
          for (const entry of page.entries) this.putEntry(entry);
          this.placeHistoryCut(page);
        });
        this.hasOlder = page.hasMore;
        // Below the reader's view: the newest leave, to be read again when scrolled to.
        if (this.log.dropNewest(MAX_SHOWN) > 0) this.windowThrough(Math.floor(this.log.last() ?? 0));
        break;
      }
    } catch (error) {
      // A page asked for before a re-sync fails as silently as it arrives: the log it was for is gone.
      if (!this.signal.aborted && runs === this.runs) this.report(describeError(error));
      return;
    } finally {
      if (this.loadingOlder === runs) this.loadingOlder = undefined;
    }
    this.fillView();
  }

  /**
   * The page after the newest entry shown, while the newest were dropped
   * (the reader scrolled back down), the oldest dropped to keep the page
   * bounded. Once the page is the last, the entries the watch committed
   * meanwhile follow it and the page shows the newest again.
   */
  private async loadNewer(): Promise<void> {
    const after = this.shownThrough;
    const runs = this.runs;
    if (after === undefined || this.loadingNewer === runs) return;
    this.loadingNewer = runs;
    try {
      const page = await this.api.observation.readTranscript(
        { worker: this.ref, position: { case: "afterSeq", value: BigInt(after) }, limit: PAGE },
        { signal: this.signal },
      );
      if (runs !== this.runs) return;
      await runs.cover(page.entries.map((entry) => entry.runId));
      if (runs !== this.runs || this.shownThrough !== after) return;
      // The window reaches past the page's entries before they are put: a run's last entry among them
      // brings its "stopped" mark back only within the window (placeCutMark).
      const last = page.entries.at(-1);
      const waiting = [...this.waiting.values()];
      if (page.hasMore && last) this.windowThrough(Number(last.seq));
      else this.showNewest();
      for (const entry of page.entries) this.putEntry(entry);
      this.placeHistoryCut(page);
      if (this.shownThrough === undefined) for (const entry of waiting) this.putEntry(entry);
      this.scroll.keepingPosition(() => {
        if (this.log.dropOldest(MAX_SHOWN) > 0) this.hasOlder = true;
      });
    } catch (error) {
      if (!this.signal.aborted && runs === this.runs) this.report(describeError(error));
    } finally {
      if (this.loadingNewer === runs) this.loadingNewer = undefined;
    }
  }

  /** The newest entries shown are those through `seq`: later ones wait for the reader to scroll down to them. */
  private windowThrough(seq: number): void {
    this.shownThrough = seq;
    for (const waiting of this.waiting.keys()) if (waiting <= seq) this.waiting.delete(waiting);
    this.live.element.hidden = true;
  }

  /** The page shows the newest entries again, and what streams after them. */
  private showNewest(): void {
    this.shownThrough = undefined;
    this.waiting.clear();
    this.live.element.hidden = false;
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

  /**
   * The note after the last readable entry when the page says damage cut
   * the history short: without it the entries before the damage read as
   * the whole conversation. After that entry's "stopped" mark (+0.5).
   */
  private placeHistoryCut(page: ReadTranscriptResponse): void {
    if (page.cut === undefined) return;
    const key = Number(page.cut.readableThroughSeq) + 0.75;
    this.log.put(key, h("div", { class: "history-cut", role: "note", "data-key": String(key) }, HISTORY_CUT_TEXT));
  }

  /** The mark after a cut run's last entry: without it, a run interrupted before it committed anything left the question unanswered. */
  private placeCutMark(runId: string): void {
    const last = this.runLastSeq.get(runId);
    const status = this.runs.cut(runId);
    if (status === undefined || last === undefined) return;
    // Its last entry is not shown now: the mark comes back with it.
    if (this.shownThrough !== undefined && last > this.shownThrough) return;
    for (const key of [...this.log.root.querySelectorAll<HTMLElement>(`[data-run="${CSS.escape(runId)}"]`)].map((e) =>
      Number(e.dataset["key"]),
    )) {
      this.log.remove(key);
    }
    // The runtime's run.interrupted notice, the run's last entry, says it already (transcript-entry.ts).
    if (this.log.get(last)?.classList.contains("interrupted")) return;
    const key = last + 0.5;
    const [name, text] =
      status === RunStatus.INTERRUPTED
        ? ["interrupted", "interrupted: the server stopped before the answer was finished"]
        : ["stopped", "stopped"];
    this.log.put(key, h("div", { class: name, "data-run": runId, "data-key": String(key) }, text));
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
      // A reader at the bottom of a window of history is not at the newest output.
      if (this.scroll.following && this.shownThrough === undefined) {
        // Trimmed only while following, so never under a reader's eyes; what left is history again.
        if (this.log.dropOldest(MAX_SHOWN) > 0) this.hasOlder = true;
        this.scroll.scrollToBottom();
      }
    });
  }
}
