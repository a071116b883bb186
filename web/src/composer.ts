import { BusyPolicy, type WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import type { Api } from "./api.js";
import { AWAITING_APPROVAL_TEXT, busyRunOf, describeError } from "./describe-error.js";
import { h } from "./dom.js";

/** The message box's placeholder while the worker (named once known) takes messages. */
function placeholderFor(name: string): string {
  return `Message ${name}… (Enter sends, Shift+Enter for a new line)`;
}
/** Ids for the note that describes a closed message box (one chat open at a time, but ids stay unique). */
let noteIds = 0;

/** What the composer needs from its chat. */
export interface ComposerInit {
  api: Api;
  worker: WorkerRef;
  /**
   * Shows why a message was not sent, or clears that (`undefined`) when the next one is sent.
   * `busyWith`: the refusal is about the run in progress (WORKER_BUSY; this is the run it names, "" if
   * none), so it stands only until that run ends, and not at all if it already has.
   */
  report: (text: string | undefined, busyWith?: string) => void;
  /** Whether the active run waits for the reader's approval: a WORKER_BUSY refusal then says so. */
  awaitingApproval: () => boolean;
  /** Further buttons beside Send (the chat's Stop). */
  actions: readonly HTMLElement[];
}

/**
 * The chat's message box and Send, and the note that says why they are
 * closed. One message at a time: it is sent with busy policy REJECT (the
 * spec's default), a second Enter while a SendInput is in flight is ignored
 * (sent at once, it reached the runtime while the first run was starting
 * and came back WORKER_BUSY, a false "busy" error for one message typed
 * once), and the box is emptied only of the message sent, only once it was
 * accepted.
 */
export class Composer {
  /** Why the worker takes no more messages (stopped, failed, deleted), shown right above the box while it is closed. */
  readonly note: HTMLElement;
  readonly form: HTMLFormElement;
  private readonly input: HTMLTextAreaElement;
  private readonly sendButton: HTMLButtonElement;
  private sending = false;
  /** The worker takes no more messages (see {@link note}): the box and Send stay closed. */
  private closed = false;
  /** The placeholder while the box is open, naming the worker (it said "the companion" whatever the profile). */
  private openPlaceholder = placeholderFor("the worker");

  constructor(private readonly init: ComposerInit) {
    this.note = h("div", { class: "ended", id: `ended-note-${++noteIds}`, role: "status", hidden: true });
    this.input = h("textarea", { class: "input", rows: "3", "aria-label": "Message", placeholder: this.openPlaceholder });
    this.sendButton = h("button", { class: "send", type: "submit" }, "Send");
    this.input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey) {
        event.preventDefault();
        void this.send();
      }
    });
    const onsubmit = (event: Event) => {
      event.preventDefault();
      void this.send();
    };
    this.form = h("form", { class: "composer", onsubmit }, this.input, h("div", { class: "actions" }, this.sendButton, ...init.actions));
  }

  /** Puts the cursor in the box: whoever opened a chat types next. */
  focus(): void {
    this.input.focus({ preventScroll: true });
  }

  /** Names the worker in the open box's placeholder (its display name, as the header shows it). */
  nameWorker(name: string): void {
    this.openPlaceholder = placeholderFor(name);
    if (!this.closed) this.input.placeholder = this.openPlaceholder;
  }

  /**
   * Closes the message box and Send, with why beside them (and as the box's
   * description and placeholder), or opens them again (`undefined`). A box
   * left open for an ended worker took a message only to refuse it. What the
   * reader had typed stays in the box.
   */
  close(why: { note: string; placeholder: string } | undefined): void {
    this.closed = why !== undefined;
    this.note.hidden = !this.closed;
    this.note.textContent = why?.note ?? "";
    this.input.disabled = this.closed;
    this.input.placeholder = why?.placeholder ?? this.openPlaceholder;
    if (this.closed) this.input.setAttribute("aria-describedby", this.note.id);
    else this.input.removeAttribute("aria-describedby");
    this.sendButton.disabled = this.closed;
  }

  private async send(): Promise<void> {
    const text = this.input.value.trim();
    if (!text || this.sending || this.closed) return;
    this.init.report(undefined);
    this.sending = true;
    // Unavailable while the message is sent, yet it keeps the focus of a keyboard user who pressed it
    // (a disabled button drops it to the page's top); a second press is ignored (`sending`).
    this.sendButton.setAttribute("aria-disabled", "true");
    try {
      await this.init.api.interaction.sendInput({
        worker: this.init.worker,
        input: { text },
        busyPolicy: BusyPolicy.REJECT,
        requestId: crypto.randomUUID(),
      });
      // Only the message sent leaves the box: what the reader began typing while it was sent stays.
      if (this.input.value.trim() === text) this.input.value = "";
    } catch (error) {
      const busyWith = busyRunOf(error);
      this.init.report(busyWith !== undefined && this.init.awaitingApproval() ? AWAITING_APPROVAL_TEXT : describeError(error), busyWith);
    } finally {
      this.sending = false;
      this.sendButton.removeAttribute("aria-disabled");
      this.sendButton.disabled = this.closed;
    }
  }
}
