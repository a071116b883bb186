import type { Run } from "../../gen/worker_runtime/v1/run_pb.js";
import type { Worker } from "../../gen/worker_runtime/v1/worker_pb.js";
import { h } from "./dom.js";
import { workerStatusText } from "./worker-status-text.js";

/**
 * The chat's header: the worker's name and what it is doing. What it is
 * doing comes from two streams of changes, the worker's (`worker_changed`)
 * and its active run's (`run_changed`), which arrive in either order; the
 * header keeps the last of each and words them together, so it follows a
 * run into AWAITING_APPROVAL and back to RUNNING after the answer. Whether
 * the run waits comes from the run alone (see workerStatusText): once it
 * ended, the worker's active_run_state is stale until its own change comes.
 */
export class ChatHeader {
  readonly element: HTMLElement;
  private readonly title: HTMLElement;
  private readonly status: HTMLElement;
  private worker: Worker | undefined;
  private activeRun: Run | undefined;

  /** `onStatus` hears the header's words at every render, with the worker they are about (the sidebar says the same). */
  constructor(
    workerId: string,
    private readonly onStatus: (worker: Worker, text: string) => void = () => {},
  ) {
    // The name may be cut with an ellipsis (style.css): the whole of it is the title, shown on hover.
    this.title = h("h2", { title: workerId }, workerId);
    // A live region: a screen reader says "running", "waiting for approval", "idle" as they come.
    this.status = h("span", { class: "status", role: "status" });
    this.element = h("header", { class: "chat-header" }, this.title, this.status);
  }

  /** The worker as last told (snapshot or `worker_changed`). */
  showWorker(worker: Worker): void {
    this.worker = worker;
    this.title.textContent = worker.displayName || worker.ref?.workerId || "";
    this.title.title = this.title.textContent;
    this.render();
  }

  /** The worker's active run as last told, or undefined once none is active. */
  showRun(run: Run | undefined): void {
    this.activeRun = run;
    this.render();
  }

  /**
   * The worker is gone ("deleted") or was never there ("not found"): said in
   * place of its last status, which for a forced delete was "stopped".
   */
  showGone(text: string): void {
    this.say(text);
    if (this.worker) this.onStatus(this.worker, text);
  }

  private render(): void {
    if (!this.worker) return;
    const text = workerStatusText(this.worker, { activeRun: this.activeRun });
    this.say(text);
    this.onStatus(this.worker, text);
  }

  /** Sets the status only when it changes: a live region re-announces text set again to the same words. */
  private say(text: string): void {
    if (this.status.textContent !== text) this.status.textContent = text;
  }
}
