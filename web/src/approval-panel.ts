import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { type Run, RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { ApprovalDecision } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import { decisionRequestId } from "../../src/cli/client/decision-request-id.js";
import type { Api } from "./api.js";
import { describeError } from "./describe-error.js";
import { h } from "./dom.js";

/**
 * The panel that asks the reader to approve or reject the tool call the
 * active run waits on, and sends the answer. Announced as it appears: the
 * run waits for the reader, who may be looking (or listening) elsewhere.
 */
export class ApprovalPanel {
  readonly element: HTMLElement;
  /** The tool call the panel asks about, while it shows. */
  private shownCall: string | undefined;
  /** The tool call and worker name the shown buttons were made for. */
  private shownQuestion: string | undefined;
  /** Who asks: the worker's display name, or its id when it has none (every worker used to be "The companion"). */
  private workerName: string;

  constructor(
    private readonly api: Api,
    private readonly worker: WorkerRef,
    /** Told why an answer could not be sent, for the chat's error line. */
    private readonly failed: (text: string) => void,
    /** Told when the panel hid or replaced the button that had the focus, so the chat can place it. */
    private readonly focusLeft: () => void = () => {},
  ) {
    this.element = h("div", {
      class: "approval",
      role: "region",
      "aria-label": "Approval needed",
      "aria-live": "assertive",
      hidden: true,
    });
    this.workerName = worker.workerId;
  }

  /** Names the worker as the chat's header does, from its display name or else its id. */
  nameWorker(name: string): void {
    this.workerName = name;
  }

  /** Asks about what `run` waits for, or hides the panel when it waits for nothing. */
  show(run: Run | undefined): void {
    const pending = run?.status === RunStatus.AWAITING_APPROVAL ? run.pendingApproval : undefined;
    // The same question asked again (a snapshot, a run change) keeps its buttons, and with them the focus.
    const asked = pending && `${pending.toolCallId}\n${this.workerName}`;
    if (asked !== undefined && asked === this.shownQuestion && !this.element.hidden) return;
    this.shownQuestion = asked;
    const hadFocus = this.element.contains(document.activeElement);
    this.shownCall = pending?.toolCallId;
    this.element.hidden = pending === undefined;
    this.element.replaceChildren();
    if (run && pending) {
      const decide = (decision: ApprovalDecision) => () => void this.answer(run.runId, pending.toolCallId, decision);
      this.element.append(
        h("p", {}, `${this.workerName} wants to run `, h("code", {}, pending.toolName), ":"),
        h("pre", {}, pending.argumentsJson),
        h("button", { class: "approve", type: "button", onclick: decide(ApprovalDecision.APPROVE) }, "Approve"),
        h("button", { class: "reject", type: "button", onclick: decide(ApprovalDecision.REJECT) }, "Reject"),
      );
    }
    if (hadFocus) this.focusLeft();
  }

  private async answer(runId: string, toolCallId: string, decision: ApprovalDecision): Promise<void> {
    try {
      // The CLI's request id for the same decision: a retried click, or a retry after a dropped
      // connection, gets the run back instead of a refusal that the call is already decided.
      const requestId = decisionRequestId(decision, toolCallId, "");
      await this.api.interaction.resolveApproval({ worker: this.worker, runId, toolCallId, decision, requestId });
      // Hidden only if it still asks about this call: the run's next approval may have come first.
      if (this.shownCall === toolCallId) {
        const hadFocus = this.element.contains(document.activeElement);
        this.element.hidden = true;
        if (hadFocus) this.focusLeft();
      }
    } catch (error) {
      this.failed(describeError(error));
    }
  }
}
