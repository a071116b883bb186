import { createApi } from "./api.js";
import { ChatView } from "./chat-view.js";
import { h } from "./dom.js";
import { WorkerList } from "./worker-list.js";

/**
 * The console: a sidebar of runtimes and workers, and the chat of the worker
 * named by the location hash (#/w/<runtime_id>/<worker_id>), so a reload
 * reopens the same conversation.
 */
const api = createApi();
const list = new WorkerList(api, () => location.hash);
const main = h("main", { class: "main" }, h("p", { class: "empty" }, "Pick a worker, or create a companion."));
document.body.replaceChildren(h("div", { class: "app" }, list.element, main));
let chat: ChatView | undefined;

function route(): void {
  chat?.close();
  chat = undefined;
  list.showLive(undefined);
  const ref = workerOfHash(location.hash);
  if (!ref) {
    main.replaceChildren(h("p", { class: "empty" }, "Pick a worker, or create a companion."));
    return;
  }
  chat = new ChatView(api, ref.runtimeId, ref.workerId, (worker, statusText) => list.showLive(worker, statusText));
  main.replaceChildren(chat.element);
  chat.open();
}

/** The worker a location hash names, or undefined (a malformed escape must not stop the page from loading). */
function workerOfHash(hash: string): { runtimeId: string; workerId: string } | undefined {
  const match = /^#\/w\/([^/]+)\/([^/]+)$/.exec(hash);
  if (!match?.[1] || !match[2]) return undefined;
  try {
    return { runtimeId: decodeURIComponent(match[1]), workerId: decodeURIComponent(match[2]) };
  } catch {
    return undefined;
  }
}

window.addEventListener("hashchange", () => {
  route();
  void list.refresh();
});
document.addEventListener("visibilitychange", () => {
  if (!document.hidden) void list.refresh();
});
route();
void list.refresh();
