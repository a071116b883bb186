import { toJsonString } from "@bufbuild/protobuf";
import { type WatchWorkerResponse, WatchWorkerResponseSchema } from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import { h } from "./dom.js";

/** Raw events kept in the debug view. */
const RAW_LIMIT = 200;

/**
 * The chat's "Raw events" view: the last RAW_LIMIT watch messages as JSON.
 * Every message is kept (so opening the view shows what came before), but
 * serialized only while the view is open: serializing each one up front sat
 * in front of rendering every streamed token.
 */
export class RawEventView {
  readonly element: HTMLDetailsElement;
  private readonly lines: HTMLElement;
  private readonly messages: WatchWorkerResponse[] = [];

  constructor() {
    this.lines = h("pre", { class: "raw-events" });
    this.element = h("details", { class: "raw" }, h("summary", {}, "Raw events"), this.lines);
    // Filled when it opens, emptied when it closes.
    this.element.addEventListener("toggle", () => this.lines.replaceChildren(...(this.element.open ? this.messages.map(rawLine) : [])));
  }

  record(message: WatchWorkerResponse): void {
    this.messages.push(message);
    if (this.messages.length > RAW_LIMIT) this.messages.shift();
    if (!this.element.open) return;
    this.lines.append(rawLine(message));
    while (this.lines.childElementCount > RAW_LIMIT) this.lines.firstElementChild?.remove();
  }
}

function rawLine(message: WatchWorkerResponse): HTMLElement {
  return h("div", {}, toJsonString(WatchWorkerResponseSchema, message));
}
