import { create } from "@bufbuild/protobuf";
import { InFlightBlockKind, InFlightBlockSchema, type InFlightBlock, type WorkerEvent } from "../../gen/worker_runtime/v1/events_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";

/** Run statuses after which a run produces nothing more. */
export const TERMINAL_RUN_STATUSES: ReadonlySet<RunStatus> = new Set([
  RunStatus.COMPLETED,
  RunStatus.CANCELLED,
  RunStatus.FAILED,
  RunStatus.INTERRUPTED,
]);

/**
 * Output streamed so far and not yet committed, rebuilt from the delivered
 * event sequence. Because it is updated at delivery (not at emission), a
 * snapshot taken together with a new subscription is exactly consistent
 * with the deltas that subscription receives next: no text twice, none lost.
 */
export class InFlightAccumulator {
  private readonly blocks = new Map<string, InFlightBlock>();

  /** Applies one delivered event. */
  apply(event: WorkerEvent): void {
    const kind = event.kind;
    switch (kind.case) {
      case "textDelta":
        this.block(kind.value.runId, kind.value.blockId, InFlightBlockKind.TEXT).text += kind.value.text;
        return;
      case "reasoningDelta":
        this.block(kind.value.runId, kind.value.blockId, InFlightBlockKind.REASONING).text += kind.value.text;
        return;
      case "toolCallDelta": {
        const block = this.block(kind.value.runId, kind.value.blockId, InFlightBlockKind.TOOL_CALL);
        if (kind.value.toolCallId) block.toolCallId = kind.value.toolCallId;
        if (kind.value.toolName) block.toolName = kind.value.toolName;
        block.text += kind.value.argumentsDelta;
        return;
      }
      case "transcriptAppended":
        if (kind.value.blockId) this.blocks.delete(kind.value.blockId);
        return;
      case "blockDiscarded":
        this.blocks.delete(kind.value.blockId);
        return;
      case "runChanged":
        if (TERMINAL_RUN_STATUSES.has(kind.value.status)) this.dropRun(kind.value.runId);
        return;
      default:
        return;
    }
  }

  /** The in-flight blocks, in the order they started. */
  snapshot(): InFlightBlock[] {
    return [...this.blocks.values()].map((block) => create(InFlightBlockSchema, block));
  }

  private dropRun(runId: string): void {
    for (const [id, block] of this.blocks) if (block.runId === runId) this.blocks.delete(id);
  }

  private block(runId: string, blockId: string, kind: InFlightBlockKind): InFlightBlock {
    let block = this.blocks.get(blockId);
    if (!block) {
      block = create(InFlightBlockSchema, { runId, blockId, kind });
      this.blocks.set(blockId, block);
    }
    return block;
  }
}
