import { create, equals, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampNow, type Timestamp } from "@bufbuild/protobuf/wkt";
import {
  InFlightBlockKind,
  WorkerEventSchema,
  type InFlightBlock,
  type WorkerEvent,
  type WorkerSnapshot,
} from "../../gen/worker_runtime/v1/events_pb.js";
import { RunSchema, type Run } from "../../gen/worker_runtime/v1/run_pb.js";
import { WorkerSchema, type Worker } from "../../gen/worker_runtime/v1/worker_pb.js";
import { TERMINAL_RUN_STATUSES } from "../runtime/index.js";

/**
 * One event as far as a relayed client's view goes (see
 * {@link RelayedWorkerView}): a decoded or an undecoded (raw-worker-event.ts)
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
      /** The text's UTF-8 bytes, when the reader asked for them (rawWorkerChange's `withText`). */
      text?: Uint8Array;
    }
  /** The block was committed (transcriptAppended) or discarded. */
  | { kind: "blockEnded"; blockId: string };

/** An in-flight block as the client has it. */
interface ShownBlock {
  runId: string;
  kind: InFlightBlockKind;
  /** UTF-8 bytes of its text the client has. */
  bytes: number;
  toolCallId: string;
  toolName: string;
}

/** What a WorkerEvent built here carries. */
type EventKind = NonNullable<MessageInitShape<typeof WorkerEventSchema>["kind"]>;

const utf8 = new TextEncoder();
// A leading U+FEFF of a missed suffix is content (see runtime/text-encoding.ts).
const fromUtf8 = new TextDecoder("utf-8", { ignoreBOM: true });

/**
 * What the client of a relayed WatchWorker has been shown: the worker, its
 * runs not ended and the in-flight output, as its snapshot and the events
 * relayed since build them (the same rules as the runtime's
 * observed-state.ts and in-flight.ts). Some of a worker's state reaches a
 * watcher live only: output deltas, and the last worker and run changes of a
 * worker quarantined while served. A resumed upstream stream replays only
 * durable events; the snapshot it opens with shows the rest. So when the
 * relay has relayed the replay up to that snapshot, {@link catchUp} gives
 * the live events (seq 0, no cursor, as the runtime sends them) that bring
 * the client from what it was shown to what the snapshot shows, instead of a
 * second snapshot, which the protocol allows only as a stream's first message.
 */
export class RelayedWorkerView {
  private worker: Worker | undefined;
  private readonly runs = new Map<string, Run>();
  private readonly blocks = new Map<string, ShownBlock>();

  /** Starts again from a snapshot the client was sent. */
  reset(snapshot: WorkerSnapshot): void {
    this.worker = snapshot.worker;
    this.runs.clear();
    this.blocks.clear();
    for (const run of [...(snapshot.activeRun ? [snapshot.activeRun] : []), ...snapshot.queuedRuns]) this.runs.set(run.runId, run);
    for (const block of snapshot.inFlight) this.apply(outputOf(block, utf8.encode(block.text).byteLength));
  }

  /** Applies one change the client was sent. */
  apply(change: ShownChange | undefined): void {
    switch (change?.kind) {
      case "worker":
        this.worker = change.worker;
        return;
      case "run":
        if (!TERMINAL_RUN_STATUSES.has(change.run.status)) {
          this.runs.set(change.run.runId, change.run);
          return;
        }
        this.runs.delete(change.run.runId);
        for (const [id, block] of this.blocks) if (block.runId === change.run.runId) this.blocks.delete(id);
        return;
      case "output": {
        const block = this.blocks.get(change.blockId);
        if (!block) {
          const { runId, block: kind, bytes, toolCallId, toolName } = change;
          this.blocks.set(change.blockId, { runId, kind, bytes, toolCallId, toolName });
          return;
        }
        block.bytes += change.bytes;
        if (change.toolCallId) block.toolCallId = change.toolCallId;
        if (change.toolName) block.toolName = change.toolName;
        return;
      }
      case "blockEnded":
        this.blocks.delete(change.blockId);
        return;
      default:
        return;
    }
  }

  /**
   * The live events that take the client from what it was shown to what
   * `snapshot` shows, in the order the runtime would have sent them: blocks
   * the runtime dropped unseen, run changes (a run that ended unseen is read with
   * `endedRun`, as the snapshot no longer holds it), the output it missed,
   * then the worker. Empty when the client already shows the snapshot.
   * When `endedRun` throws, so does this, with the view unchanged: those
   * runs are read before anything is applied, so the caller can try again.
   */
  async catchUp(snapshot: WorkerSnapshot, endedRun: (runId: string) => Promise<Run | undefined>): Promise<WorkerEvent[]> {
    const open = new Map<string, Run>();
    for (const run of [...(snapshot.activeRun ? [snapshot.activeRun] : []), ...snapshot.queuedRuns]) open.set(run.runId, run);
    const ended: Run[] = [];
    for (const runId of [...this.runs.keys()]) {
      if (open.has(runId)) continue;
      const run = await endedRun(runId);
      if (run && TERMINAL_RUN_STATUSES.has(run.status)) ended.push(run);
    }
    const events: WorkerEvent[] = [];
    const emit = (kind: EventKind, time: Timestamp | undefined = undefined): void => {
      const event = create(WorkerEventSchema, { time: time ?? timestampNow(), kind });
      events.push(event);
      this.apply(changeOf(event));
    };
    const inFlight = new Map(snapshot.inFlight.map((block) => [block.blockId, block]));
    // Blocks of runs still open that the runtime dropped unseen; those of ended runs go with the run's end.
    for (const [blockId, block] of this.blocks) {
      if (!inFlight.has(blockId) && open.has(block.runId)) emit({ case: "blockDiscarded", value: { runId: block.runId, blockId } });
    }
    for (const run of ended) emit({ case: "runChanged", value: run });
    for (const run of open.values()) {
      const shown = this.runs.get(run.runId);
      if (!shown || !equals(RunSchema, shown, run)) emit({ case: "runChanged", value: run });
    }
    for (const block of inFlight.values()) {
      const missed = this.missedOutput(block);
      if (missed?.restart) emit({ case: "blockDiscarded", value: { runId: block.runId, blockId: block.blockId } });
      if (missed) emit(deltaOf(block, missed.text));
    }
    if (snapshot.worker && !(this.worker && equals(WorkerSchema, this.worker, snapshot.worker))) {
      emit({ case: "workerChanged", value: snapshot.worker }, snapshot.worker.updatedAt);
    }
    return events;
  }

  /**
   * The text of `block` the client lacks (undefined when it has it all and
   * its tool call's id and name); all of it, to restart the block, when what
   * the client has cannot be a start of it.
   */
  private missedOutput(block: InFlightBlock): { text: string; restart: boolean } | undefined {
    const shown = this.blocks.get(block.blockId);
    if (!shown) return { text: block.text, restart: false };
    const bytes = utf8.encode(block.text);
    if (shown.kind !== block.kind || shown.runId !== block.runId || shown.bytes > bytes.byteLength)
      return { text: block.text, restart: true };
    const named = block.toolCallId === shown.toolCallId && block.toolName === shown.toolName;
    if (shown.bytes === bytes.byteLength && named) return undefined;
    return { text: fromUtf8.decode(bytes.subarray(shown.bytes)), restart: false };
  }
}

/** What a decoded event changes in a client's view. */
export function changeOf(event: WorkerEvent): ShownChange | undefined {
  const kind = event.kind;
  switch (kind.case) {
    case "workerChanged":
      return { kind: "worker", worker: kind.value };
    case "runChanged":
      return { kind: "run", run: kind.value };
    case "textDelta":
    case "reasoningDelta": {
      const block = kind.case === "textDelta" ? InFlightBlockKind.TEXT : InFlightBlockKind.REASONING;
      const { runId, blockId, text } = kind.value;
      return { kind: "output", block, runId, blockId, bytes: utf8.encode(text).byteLength, toolCallId: "", toolName: "" };
    }
    case "toolCallDelta": {
      const { runId, blockId, toolCallId, toolName, argumentsDelta } = kind.value;
      const bytes = utf8.encode(argumentsDelta).byteLength;
      return { kind: "output", block: InFlightBlockKind.TOOL_CALL, runId, blockId, bytes, toolCallId, toolName };
    }
    case "transcriptAppended":
      return kind.value.blockId ? { kind: "blockEnded", blockId: kind.value.blockId } : undefined;
    case "blockDiscarded":
      return { kind: "blockEnded", blockId: kind.value.blockId };
    default:
      return undefined;
  }
}

function outputOf(block: InFlightBlock, bytes: number): ShownChange {
  const { runId, blockId, kind, toolCallId, toolName } = block;
  return { kind: "output", block: kind, runId, blockId, bytes, toolCallId, toolName };
}

/** The delta that appends `text` to `block` (a tool call's also names it). */
function deltaOf(block: InFlightBlock, text: string): EventKind {
  const { runId, blockId } = block;
  switch (block.kind) {
    case InFlightBlockKind.REASONING:
      return { case: "reasoningDelta", value: { runId, blockId, text } };
    case InFlightBlockKind.TOOL_CALL:
      return {
        case: "toolCallDelta",
        value: { runId, blockId, toolCallId: block.toolCallId, toolName: block.toolName, argumentsDelta: text },
      };
    default:
      return { case: "textDelta", value: { runId, blockId, text } };
  }
}
