import type { ToolResult, TranscriptEntry } from "../../gen/worker_runtime/v1/transcript_pb.js";
import { h } from "./dom.js";
import { renderMarkdown } from "./markdown.js";
import { REJECTED_CALL_OUTPUT } from "../../src/engine/rejected-call.js";

/** The notice code of a run the runtime's stop interrupted (src/runtime/interrupted-notice.ts). */
const RUN_INTERRUPTED_NOTICE = "run.interrupted";

/** One committed transcript entry as the conversation shows it (its seq on the element, for ordering). */
export function renderEntry(entry: TranscriptEntry): HTMLElement {
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
    case "toolResult": {
      const outcome = resultOutcome(content.value);
      return h(
        "details",
        { class: `entry tool-result${outcome.className}`, "data-seq": seq },
        h("summary", {}, `${outcome.label} ${content.value.toolName}${content.value.truncated ? " (truncated)" : ""}`),
        h("pre", {}, content.value.output),
      );
    }
    case "notice":
      // A run the runtime's stop interrupted ends with this notice: shown as the mark such a run gets (conversation.ts).
      if (content.value.code === RUN_INTERRUPTED_NOTICE)
        return h("div", { class: "interrupted", "data-seq": seq }, `interrupted: ${content.value.message}`);
      return h("div", { class: "entry notice", "data-seq": seq }, content.value.message);
    default:
      return h("div", { class: "entry", "data-seq": seq });
  }
}

/**
 * How a tool call ended, from its result. A call the reader rejected is an
 * error result to the model, yet nothing failed: its output begins with
 * the engine's own sentence for it (src/engine/rejected-call.ts, shared),
 * so it is labelled "Rejected" rather than "Failed".
 */
function resultOutcome(result: ToolResult): { label: string; className: string } {
  if (!result.isError) return { label: "Result of", className: "" };
  if (result.output.startsWith(REJECTED_CALL_OUTPUT)) return { label: "Rejected", className: " rejected" };
  return { label: "Failed", className: " failed" };
}
