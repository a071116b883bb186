import { RuntimeHealth } from "../../gen/worker_runtime/v1/backend_pb.js";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import type { RegisteredRuntime } from "../../gen/worker_runtime/v1/runtime_registry_pb.js";
import type { Worker } from "../../gen/worker_runtime/v1/worker_pb.js";
import type { Api } from "./api.js";
import { unknownValue, workerStatusText } from "./worker-status-text.js";
import { companionRuntime } from "./companion-runtime.js";
import { accessToken, setAccessToken } from "./access-token.js";
import { describeError, reasonOf } from "./describe-error.js";
import { h } from "./dom.js";
import { tokenForm } from "./token-form.js";

/** How often the sidebar refreshes runtimes and workers. */
const REFRESH_MS = 3_000;

/** Workers per page of the sidebar: polled first, then one more each time the list is scrolled to its end. */
const PAGE = 100;
/** The most workers the sidebar lists; past them it says so and points to the CLI, which lists all. */
export const MAX_LISTED = 2_000;
/** The Backend's largest ListWorkers page: refreshing a long list takes few calls. */
const MAX_PAGE_SIZE = 500;

const HEALTH = ["unknown", "ready", "connecting", "unavailable", "unauthenticated", "incompatible"];

/**
 * The sidebar: every runtime the Backend knows with its health, its workers
 * (status and connectivity), and "New companion" (placed by
 * {@link companionRuntime}; its chat opens unless the reader picked another
 * worker while it was being created, then it only joins the list). Polled;
 * the Backend's ListWorkers fans out in parallel. The poll lists the first page of workers; scrolling to the end of
 * the list (or "More workers") adds a page, up to {@link MAX_LISTED}, and the
 * poll then refreshes what is shown, in pages of up to 500: it costs what is
 * on screen, never the whole fleet.
 */
export class WorkerList {
  readonly element: HTMLElement;
  private readonly body: HTMLElement;
  private readonly error: HTMLElement;
  private readonly tokenForm: HTMLFormElement;
  /** The last listing, for placing a new companion; undefined until one succeeded. */
  private listed: { runtimes: RegisteredRuntime[]; workers: Worker[] } | undefined;
  private timer: ReturnType<typeof setTimeout> | undefined;
  /** How many workers to list: PAGE, plus a PAGE per scroll to the end. */
  private wanted = PAGE;
  /** The Backend has workers past those listed. */
  private hasMore = false;
  /** Counts refreshes, so an older one finishing late does not overwrite a newer listing. */
  private generation = 0;
  private readonly moreButton: HTMLButtonElement;
  private readonly capped: HTMLElement;
  /** The open chat's worker as its watch last told it: newer than a poll between two polls. */
  private live: Worker | undefined;
  /** What the chat's header says of {@link live}, which the sidebar says too. */
  private liveText = "";

  constructor(
    private readonly api: Api,
    private readonly selected: () => string,
  ) {
    this.body = h("div", { class: "runtimes" });
    this.error = h("div", { class: "error", role: "alert", hidden: true });
    this.tokenForm = tokenForm((token) => {
      setAccessToken(token);
      void this.refresh();
    });
    this.moreButton = h("button", { class: "more-workers", type: "button", onclick: () => void this.loadMore() }, "More workers");
    this.capped = h(
      "p",
      { class: "muted capped" },
      `Only the first ${MAX_LISTED.toLocaleString("en")} workers are listed here; \`worker-runtime workers list\` lists them all.`,
    );
    // The end of the list came into view: the reader wants the next page.
    new IntersectionObserver((entries) => {
      if (entries.some((entry) => entry.isIntersecting)) void this.loadMore();
    }).observe(this.moreButton);
    this.element = h(
      "nav",
      { class: "sidebar", "aria-label": "Workers" },
      h("h1", {}, "worker-runtime"),
      h("button", { class: "new-companion", type: "button", onclick: () => void this.createCompanion() }, "New companion"),
      this.error,
      this.tokenForm,
      this.body,
    );
  }

  async refresh(): Promise<void> {
    clearTimeout(this.timer);
    // Hidden, the list is not looked at: no calls (main.ts refreshes when the tab is shown again).
    if (document.hidden && this.listed) return;
    const generation = ++this.generation;
    try {
      const [{ runtimes }, { workers, more }] = await Promise.all([this.api.registry.listRuntimes({ pageSize: 100 }), this.listWorkers()]);
      if (generation !== this.generation) return;
      this.listed = { runtimes, workers };
      this.hasMore = more;
      this.render(runtimes, workers);
      this.error.hidden = true;
      this.tokenForm.hidden = true;
    } catch (error) {
      if (generation !== this.generation) return;
      this.showError(error);
    }
    // Only the newest refresh keeps a timer: refreshes run side by side (a click, a page added) would otherwise poll twice as often.
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.refresh(), REFRESH_MS);
  }

  /**
   * The open chat's worker as its watch tells it, shown at once, in the
   * words of the chat's header (`statusText`): the poll would show a change
   * up to 3 s late, so the sidebar said "idle" beside a header saying
   * "running"; and the worker alone lags behind its run, so it said
   * "waiting for approval" after the header knew the run had ended. A poll
   * that read the worker before the change does not undo it: the newer of
   * the two (by `last_event_seq`) is shown.
   */
  showLive(worker: Worker | undefined, statusText = worker ? workerStatusText(worker) : ""): void {
    this.live = worker;
    this.liveText = statusText;
    if (!worker?.ref) return;
    const entry = this.body.querySelector(`li[data-worker="${CSS.escape(workerKey(worker))}"] .worker-status`);
    if (entry) entry.textContent = statusText;
  }

  /** The newer of a polled worker and the live one. */
  private newest(polled: Worker): Worker {
    const live = this.live;
    return live && workerKey(live) === workerKey(polled) && live.lastEventSeq >= polled.lastEventSeq ? live : polled;
  }

  /** The first `wanted` workers, following next_page_token; `more` if the Backend has others. */
  private async listWorkers(): Promise<{ workers: Worker[]; more: boolean }> {
    const workers: Worker[] = [];
    let pageToken = "";
    // Bounded even if pages come back short (a runtime failing between pages).
    for (let call = 0; call < (2 * MAX_LISTED) / PAGE; call++) {
      const page = await this.api.catalog.listWorkers({ pageSize: Math.min(MAX_PAGE_SIZE, this.wanted - workers.length), pageToken });
      workers.push(...page.workers);
      pageToken = page.nextPageToken;
      if (!pageToken || workers.length >= this.wanted) break;
    }
    return { workers, more: pageToken !== "" };
  }

  /** One more page, when the list's end is in view and the Backend has more. */
  private async loadMore(): Promise<void> {
    if (!this.hasMore || this.wanted >= MAX_LISTED || this.wanted > (this.listed?.workers.length ?? 0)) return;
    this.wanted = Math.min(MAX_LISTED, this.wanted + PAGE);
    await this.refresh();
  }

  private render(runtimes: RegisteredRuntime[], workers: Worker[]): void {
    const current = this.selected();
    const focused = this.focusedEntry();
    this.body.replaceChildren(
      ...runtimes.map((runtime) => {
        // The class stays "unknown" for a value this console does not know; the text gives its number.
        const health = HEALTH[runtime.health] ?? "unknown";
        const own = workers.filter((worker) => worker.ref?.runtimeId === runtime.runtimeId);
        return h(
          "section",
          { class: "runtime", "data-runtime": runtime.runtimeId },
          h(
            "h3",
            {},
            runtime.summary?.displayName || runtime.runtimeId,
            h("span", { class: `health ${health}`, title: runtime.healthMessage }, HEALTH[runtime.health] ?? unknownValue(runtime.health)),
            runtime.embedded ? h("span", { class: "tag" }, "embedded") : "",
          ),
          runtime.health === RuntimeHealth.READY || own.length > 0
            ? h(
                "ul",
                { class: "workers" },
                ...own.map((polled) => {
                  const worker = this.newest(polled);
                  const route = `#/w/${encodeURIComponent(runtime.runtimeId)}/${encodeURIComponent(worker.ref?.workerId ?? "")}`;
                  const name = worker.displayName || worker.ref?.workerId || "";
                  return h(
                    "li",
                    { class: route === current ? "worker selected" : "worker", "data-worker": workerKey(worker) },
                    h("a", { href: route, title: name, "aria-current": route === current ? "page" : undefined }, name || "?"),
                    h("span", { class: "worker-status" }, worker === this.live ? this.liveText : workerStatusText(worker)),
                  );
                }),
              )
            : h("p", { class: "muted" }, runtime.healthMessage || "not reachable"),
        );
      }),
      !this.hasMore ? "" : this.wanted < MAX_LISTED ? this.moreButton : this.capped,
    );
    focused?.();
  }

  /**
   * What has the focus in the list, as a way to give it back once the list
   * is rendered again: every poll replaced the entries, and the focus of a
   * keyboard user on one fell back to the page's top every 3 s.
   */
  private focusedEntry(): (() => void) | undefined {
    const active = document.activeElement;
    if (!(active instanceof HTMLElement) || !this.body.contains(active)) return undefined;
    if (active === this.moreButton) return () => this.moreButton.isConnected && this.moreButton.focus({ preventScroll: true });
    const key = active.closest<HTMLElement>("li[data-worker]")?.dataset["worker"];
    if (key === undefined) return undefined;
    return () => this.body.querySelector<HTMLElement>(`li[data-worker="${CSS.escape(key)}"] a`)?.focus({ preventScroll: true });
  }

  private async createCompanion(): Promise<void> {
    // Where the reader was on clicking: if they pick another worker before the answer, they stay there.
    const from = this.selected();
    if (!this.listed) await this.refresh();
    try {
      // A failure on the chosen runtime is shown, not retried elsewhere: that would hide a broken runtime.
      const { worker } = await this.api.catalog.createWorker({
        runtimeId: companionRuntime(this.listed?.runtimes ?? [], this.listed?.workers ?? []) ?? "",
        profile: { source: { case: "builtin", value: "companion" } },
        displayName: `Companion ${new Date().toLocaleTimeString()}`,
        requestId: crypto.randomUUID(),
      });
      if (worker?.ref && this.selected() === from)
        location.hash = `#/w/${encodeURIComponent(worker.ref.runtimeId)}/${encodeURIComponent(worker.ref.workerId)}`;
      await this.refresh();
    } catch (error) {
      this.showError(error);
    }
  }

  /** An error in words; for want of a token, the token form too (the polling picks the token up). */
  private showError(error: unknown): void {
    const unauthenticated = reasonOf(error) === ErrorReason.UNAUTHENTICATED;
    this.tokenForm.hidden = !unauthenticated;
    this.error.hidden = false;
    this.error.textContent = !unauthenticated
      ? describeError(error)
      : accessToken()
        ? "That token was refused by the Backend. Enter the one in its --token-file (or WORKER_RUNTIME_TOKEN)."
        : "This Backend needs its access token: the one in its --token-file (or WORKER_RUNTIME_TOKEN).";
  }
}

/** A worker's identity as one string (runtime and worker ids cannot hold a newline). */
function workerKey(worker: Worker): string {
  return `${worker.ref?.runtimeId ?? ""}\n${worker.ref?.workerId ?? ""}`;
}
