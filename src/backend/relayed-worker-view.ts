import { create, equals, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampNow, type Timestamp } from "@bufbuild/protobuf/wkt";
import {
  InFlightBlockKind,
  InFlightBlockSchema,
  WorkerEventSchema,
  WorkerSnapshotSchema,
  type InFlightBlock,
  type WorkerEvent,
  type WorkerSnapshot,
} from "../../gen/worker_runtime/v1/events_pb.js";
import { RunSchema, RunStatus, type Run } from "../../gen/worker_runtime/v1/run_pb.js";
import { WorkerSchema, type Worker } from "../../gen/worker_runtime/v1/worker_pb.js";
import { TERMINAL_RUN_STATUSES } from "../runtime/index.js";
import { changeOf, type ShownChange } from "./shown-change.js";

/** An in-flight block as the client has it. */
interface ShownBlock {
  runId: string;
  kind: InFlightBlockKind;
  /** UTF-8 bytes of its text the client has. */
  bytes: number;
  toolCallId: string;
  toolName: string;
  /** Its text, when the view holds text: `length` UTF-8 bytes in a buffer that doubles as it grows. */
  text: Uint8Array;
  length: number;
  /** Its text went past the view's bound and is no longer held. */
  dropped: boolean;
}

/** What a WorkerEvent built here carries. */
type EventKind = NonNullable<MessageInitShape<typeof WorkerEventSchema>["kind"]>;

const NO_TEXT = new Uint8Array(0);
const utf8 = new TextEncoder();
// A leading U+FEFF is content (see runtime/text-encoding.ts).
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
 *
 * Built with `maxHeldBytes`, it also holds the in-flight text (as the UTF-8
 * bytes the undecoded events carry; decoded only when a snapshot is cut) and
 * the last durable cursor: it is then the full current state of the
 * Backend's shared upstream WatchWorker (shared-worker-watch.ts), the one
 * record its virtual client's catch-ups and its joining clients' snapshots
 * ({@link snapshot}) both come from, so each event is read and applied once.
 * The text is bounded as the Runtime bounds a run's in-flight output: past
 * `maxHeldBytes` a block's text is dropped and the view is not
 * {@link servable} until that block has ended.
 */
export class RelayedWorkerView {
  private worker: Worker | undefined;
  private readonly runs = new Map<string, Run>();
  private readonly blocks = new Map<string, ShownBlock>();
  private heldBytes = 0;
  private droppedBlocks = 0;
  /** The last durable cursor the stream told ("" before its snapshot), kept by the view's owner. */
  cursor = "";

  /** `maxHeldBytes`: hold the in-flight text, up to that many bytes; absent: count it only. */
  constructor(private readonly maxHeldBytes?: number) {}

  /** Whether a snapshot can be cut: the stream's snapshot came, the view holds text and none was dropped. */
  get servable(): boolean {
    return this.worker !== undefined && this.maxHeldBytes !== undefined && this.droppedBlocks === 0;
  }

  /** UTF-8 bytes of in-flight text held (for diagnostics and tests). */
  get inFlightBytes(): number {
    return this.heldBytes;
  }

  /** Starts again from a snapshot the client was sent. */
  reset(snapshot: WorkerSnapshot): void {
    this.worker = snapshot.worker;
    this.runs.clear();
    this.blocks.clear();
    this.heldBytes = 0;
    this.droppedBlocks = 0;
    this.cursor = snapshot.cursor;
    for (const run of [...(snapshot.activeRun ? [snapshot.activeRun] : []), ...snapshot.queuedRuns]) this.runs.set(run.runId, run);
    for (const block of snapshot.inFlight) {
      const { runId, blockId, kind, toolCallId, toolName } = block;
      const text = utf8.encode(block.text);
      this.apply({ kind: "output", block: kind, runId, blockId, bytes: text.byteLength, toolCallId, toolName, text });
    }
  }

  /** Applies one change the client was sent (a view holding text reads it from the change: `withText`). */
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
        for (const [id, block] of this.blocks) if (block.runId === change.run.runId) this.drop(id);
        return;
      case "output":
        this.append(change);
        return;
      case "blockEnded":
        this.drop(change.blockId);
        return;
      default:
        return;
    }
  }

  /** The snapshot a direct watcher would get at this point of the stream (a view holding text: see {@link servable}). */
  snapshot(): WorkerSnapshot {
    const runs = [...this.runs.values()];
    const active = runs.find((run) => run.status !== RunStatus.QUEUED);
    return create(WorkerSnapshotSchema, {
      ...(this.worker ? { worker: this.worker } : {}),
      ...(active ? { activeRun: active } : {}),
      queuedRuns: runs.filter((run) => run.status === RunStatus.QUEUED),
      inFlight: [...this.blocks].map(([blockId, block]) =>
        create(InFlightBlockSchema, {
          runId: block.runId,
          blockId,
          kind: block.kind,
          text: fromUtf8.decode(block.text.subarray(0, block.length)),
          toolCallId: block.toolCallId,
          toolName: block.toolName,
        }),
      ),
      cursor: this.cursor,
    });
  }

  /**
   * The live events that take the client from what it was shown to what
   * `snapshot` shows, in the order the runtime would have sent them: blocks
   * the runtime dropped unseen, run changes (a run that ended unseen is read with
   * `endedRun`, as the snapshot no longer holds it), the output it missed,
   * then the worker. Empty when the client already shows the snapshot.
   * When `endedRun` throws, so does this, with the view unchanged: those
   * runs are read before anything is applied, so the caller can try again.
   * `caughtUp` is told the events in the same tick as they are applied
   * (before this settles), for an owner that keeps something in step with
   * the view.
   */
  async catchUp(
    snapshot: WorkerSnapshot,
    endedRun: (runId: string) => Promise<Run | undefined>,
    caughtUp?: (events: WorkerEvent[]) => void,
  ): Promise<WorkerEvent[]> {
    const open = new Map<string, Run>();
    for (const run of [...(snapshot.activeRun ? [snapshot.activeRun] : []), ...snapshot.queuedRuns]) open.set(run.runId, run);
    const ended: Run[] = [];
    for (const runId of [...this.runs.keys()]) {
      if (open.has(runId)) continue;
      const run = await endedRun(runId);
      if (run && TERMINAL_RUN_STATUSES.has(run.status)) ended.push(run);
    }
    const events: WorkerEvent[] = [];
    const withText = this.maxHeldBytes !== undefined;
    const emit = (kind: EventKind, time: Timestamp | undefined = undefined): void => {
      const event = create(WorkerEventSchema, { time: time ?? timestampNow(), kind });
      events.push(event);
      this.apply(changeOf(event, withText));
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
    caughtUp?.(events);
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

  private append(change: Extract<ShownChange, { kind: "output" }>): void {
    let block = this.blocks.get(change.blockId);
    if (!block) {
      const { runId, block: kind, toolCallId, toolName } = change;
      block = { runId, kind, bytes: 0, toolCallId, toolName, text: NO_TEXT, length: 0, dropped: false };
      this.blocks.set(change.blockId, block);
    }
    block.bytes += change.bytes;
    if (change.toolCallId) block.toolCallId = change.toolCallId;
    if (change.toolName) block.toolName = change.toolName;
    if (this.maxHeldBytes !== undefined && change.text !== undefined) this.hold(block, change.text, this.maxHeldBytes);
  }

  /** Appends `text` to the block's held text, or drops the block's text when the view's bound would be passed. */
  private hold(block: ShownBlock, text: Uint8Array, maxHeldBytes: number): void {
    if (block.dropped || text.byteLength === 0) return;
    if (this.heldBytes + text.byteLength > maxHeldBytes) {
      this.heldBytes -= block.length;
      block.text = NO_TEXT;
      block.length = 0;
      block.dropped = true;
      this.droppedBlocks++;
      return;
    }
    if (block.length + text.byteLength > block.text.byteLength) {
      const grown = new Uint8Array(Math.max(64, 2 * (block.length + text.byteLength)));
      grown.set(block.text.subarray(0, block.length));
      block.text = grown;
    }
    block.text.set(text, block.length);
    block.length += text.byteLength;
    this.heldBytes += text.byteLength;
  }

  private drop(blockId: string): void {
    const block = this.blocks.get(blockId);
    if (!block) return;
    this.blocks.delete(blockId);
    this.heldBytes -= block.length;
    if (block.dropped) this.droppedBlocks--;
  }
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
