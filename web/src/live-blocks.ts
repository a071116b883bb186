import { type InFlightBlock, InFlightBlockKind } from "../../gen/worker_runtime/v1/events_pb.js";
import { h } from "./dom.js";
import { StreamingMarkdown } from "./streaming-markdown.js";

interface LiveBlock {
  block: InFlightBlock;
  element: HTMLElement;
  body: HTMLElement;
  /** A text block's markdown, re-rendered from its growing end only. */
  markdown?: StreamingMarkdown;
}

/**
 * The chat's in-flight blocks (text, reasoning, tool calls still streaming),
 * below the committed log. A new block shows its first text at once; later
 * deltas only mark it dirty and ask for a frame (`changed`), where
 * {@link renderDirty} re-renders each dirty block once, so markdown is not
 * re-parsed per token.
 */
export class LiveBlocks {
  private readonly blocks = new Map<string, LiveBlock>();
  private readonly dirty = new Set<LiveBlock>();

  constructor(
    readonly element: HTMLElement,
    private readonly changed: () => void,
  ) {}

  /** Adds a delta to its block, starting the block if it is new. */
  append(runId: string, blockId: string, kind: InFlightBlockKind, text: string, toolName = ""): void {
    const existing = this.blocks.get(blockId);
    if (existing) {
      existing.block.text += text;
      if (toolName) existing.block.toolName = toolName;
      this.dirty.add(existing);
      this.changed();
      return;
    }
    this.add({ $typeName: "worker_runtime.v1.InFlightBlock", runId, blockId, kind, text, toolCallId: "", toolName });
  }

  /** Replaces every block with a snapshot's: deltas missed while disconnected are in them. */
  replaceAll(blocks: readonly InFlightBlock[]): void {
    for (const key of [...this.blocks.keys()]) this.drop(key);
    for (const block of blocks) this.add(block);
  }

  /** Removes a block (committed or discarded). */
  drop(blockId: string): void {
    const live = this.blocks.get(blockId);
    if (!live) return;
    live.element.remove();
    this.dirty.delete(live);
    this.blocks.delete(blockId);
  }

  /** Removes an ended run's blocks: as in the runtime's snapshot, an ended run has nothing in flight. */
  dropRun(runId: string): void {
    for (const [key, live] of this.blocks) if (live.block.runId === runId) this.drop(key);
  }

  /** Renders the blocks whose deltas arrived since the last frame. */
  renderDirty(): void {
    for (const live of this.dirty) render(live);
    this.dirty.clear();
  }

  private add(block: InFlightBlock): void {
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
    this.element.append(element);
    render(live);
    this.changed();
  }
}

function render(live: LiveBlock): void {
  if (live.markdown) live.markdown.update(live.block.text);
  else if (live.block.kind === InFlightBlockKind.TOOL_CALL) live.body.replaceChildren(h("pre", {}, live.block.text));
  else live.body.textContent = live.block.text;
}
