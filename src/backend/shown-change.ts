import { InFlightBlockKind, type WorkerEvent } from "../../gen/worker_runtime/v1/events_pb.js";
import type { Run } from "../../gen/worker_runtime/v1/run_pb.js";
import type { Worker } from "../../gen/worker_runtime/v1/worker_pb.js";

/**
 * One event as far as a relayed client's view goes (relayed-worker-view.ts):
 * a decoded ({@link changeOf}) or an undecoded (raw-worker-event.ts)
 * WorkerEvent comes to this. In-flight output is counted in UTF-8 bytes, so
 * the undecoded relay never decodes the text it passes on.
 */
export type ShownChange =
  | { kind: "worker"; worker: Worker }
  | { kind: "run"; run: Run }
  | {
      kind: "output";
      block: InFlightBlockKind;
      runId: string;
      blockId: string;
      bytes: number;
      toolCallId: string;
      toolName: string;
      /** The text's UTF-8 bytes, when the reader asked for them (`withText`), for a view that holds the text. */
      text?: Uint8Array | undefined;
    }
  /** The block was committed (transcriptAppended) or discarded. */
  | { kind: "blockEnded"; blockId: string };

const utf8 = new TextEncoder();

/** What a decoded event changes in a client's view; with `withText`, an output change carries its text's UTF-8 bytes. */
export function changeOf(event: WorkerEvent, withText = false): ShownChange | undefined {
  const kind = event.kind;
  switch (kind.case) {
    case "workerChanged":
      return { kind: "worker", worker: kind.value };
    case "runChanged":
      return { kind: "run", run: kind.value };
    case "textDelta":
    case "reasoningDelta": {
      const block = kind.case === "textDelta" ? InFlightBlockKind.TEXT : InFlightBlockKind.REASONING;
      const { runId, blockId } = kind.value;
      const text = utf8.encode(kind.value.text);
      return { kind: "output", block, runId, blockId, bytes: text.byteLength, toolCallId: "", toolName: "", text: held(text, withText) };
    }
    case "toolCallDelta": {
      const { runId, blockId, toolCallId, toolName } = kind.value;
      const text = utf8.encode(kind.value.argumentsDelta);
      const bytes = text.byteLength;
      return {
        kind: "output",
        block: InFlightBlockKind.TOOL_CALL,
        runId,
        blockId,
        bytes,
        toolCallId,
        toolName,
        text: held(text, withText),
      };
    }
    case "transcriptAppended":
      return kind.value.blockId ? { kind: "blockEnded", blockId: kind.value.blockId } : undefined;
    case "blockDiscarded":
      return { kind: "blockEnded", blockId: kind.value.blockId };
    default:
      return undefined;
  }
}

function held(text: Uint8Array, withText: boolean): Uint8Array | undefined {
  return withText ? text : undefined;
}
