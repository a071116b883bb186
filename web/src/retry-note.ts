import type { ProviderRetry } from "../../gen/worker_runtime/v1/run_pb.js";
import { h } from "./dom.js";

/**
 * What the chat says while the run's model request failed and waits to be
 * asked again (`retry_scheduled`): the runtime retries for up to a minute
 * by default, and the chat showed only "running" above an empty reply
 * meanwhile, as if the model were thinking. The note leaves once the run
 * makes progress (a delta or an entry of that run) or ends.
 */
export class RetryNote {
  readonly element: HTMLElement;
  /** The run the note is about, if shown. */
  private runId: string | undefined;

  constructor() {
    this.element = h("div", { class: "retrying", role: "status", hidden: true });
  }

  /** A retry of the run's model request was scheduled. */
  show(runId: string, retry: ProviderRetry | undefined): void {
    this.runId = runId;
    const seconds = Math.max(1, Math.round((retry?.delayMs ?? 0) / 1000));
    const reason = retry?.reason ? ` (${retry.reason})` : "";
    this.element.textContent = `The model provider failed${reason}. Retry ${retry?.attempt ?? ""} in ${seconds} s…`;
    this.element.hidden = false;
  }

  /** The run made progress or ended (or any run, with no id: a fresh snapshot): the failure is over. */
  clear(runId?: string): void {
    if (this.runId === undefined || (runId !== undefined && runId !== this.runId)) return;
    this.runId = undefined;
    this.element.hidden = true;
    this.element.textContent = "";
  }
}
