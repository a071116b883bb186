import { create } from "@bufbuild/protobuf";
import {
  InFlightBlockSchema,
  WorkerSnapshotSchema,
  type InFlightBlockKind,
  type WorkerSnapshot,
} from "../../gen/worker_runtime/v1/events_pb.js";
import { RunStatus, type Run } from "../../gen/worker_runtime/v1/run_pb.js";
import type { Worker } from "../../gen/worker_runtime/v1/worker_pb.js";
import { TERMINAL_RUN_STATUSES } from "../runtime/index.js";
import type { ShownChange } from "./relayed-worker-view.js";

/** An in-flight block with its text kept as UTF-8 bytes (in a buffer that doubles as it grows). */
interface HeldBlock {
  runId: string;
  kind: InFlightBlockKind;
  toolCallId: string;
  toolName: string;
  text: Uint8Array;
  length: number;
  /** Its text went past the view's bound and is no longer held. */
  dropped: boolean;
}

const utf8 = new TextEncoder();
// A leading U+FEFF is content (see runtime/text-encoding.ts).
const fromUtf8 = new TextDecoder("utf-8", { ignoreBOM: true });

/**
 * The full current state of one watched worker as the Backend's shared
 * upstream WatchWorker shows it (shared-worker-watch.ts): the worker, its
 * runs not ended in the order they were accepted, the in-flight blocks
 * WITH their text, and the last durable cursor; built by the same rules as
 * the Runtime's observed-state.ts and in-flight.ts, so the snapshot cut
 * from it is the one a direct watcher would get at that point of the
 * stream. The text stays UTF-8 bytes as the undecoded events carry it and
 * is decoded only when a snapshot is built (a client joins). It is bounded
 * as the Runtime bounds a run's in-flight output: past `maxInFlightBytes`
 * a block's text is dropped and the view is not {@link servable} until
 * that block has ended (joining clients are then relayed on their own).
 */
export class SharedWorkerView {
  private worker: Worker | undefined;
  private readonly runs = new Map<string, Run>();
  private readonly blocks = new Map<string, HeldBlock>();
  private heldBytes = 0;
  private droppedBlocks = 0;
  /** The last durable cursor the stream told ("" before its snapshot). */
  cursor = "";

  constructor(private readonly maxInFlightBytes: number) {}

  /** Whether a snapshot can be cut: the stream's snapshot came and no block's text was dropped. */
  get servable(): boolean {
    return this.worker !== undefined && this.droppedBlocks === 0;
  }

  /** UTF-8 bytes of in-flight text held (for diagnostics and tests). */
  get inFlightBytes(): number {
    return this.heldBytes;
  }

  /** Starts from the stream's snapshot. */
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

  /** Applies one change of the stream (an output change carries its text: rawWorkerChange's `withText`). */
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

  /** The snapshot a direct watcher would get at this point of the stream. */
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

  private append(change: Extract<ShownChange, { kind: "output" }>): void {
    let block = this.blocks.get(change.blockId);
    if (!block) {
      const { runId, block: kind, toolCallId, toolName } = change;
      block = { runId, kind, toolCallId, toolName, text: new Uint8Array(0), length: 0, dropped: false };
      this.blocks.set(change.blockId, block);
    }
    if (change.toolCallId) block.toolCallId = change.toolCallId;
    if (change.toolName) block.toolName = change.toolName;
    const text = change.text ?? new Uint8Array(0);
    if (block.dropped || text.byteLength === 0) return;
    if (this.heldBytes + text.byteLength > this.maxInFlightBytes) {
      this.heldBytes -= block.length;
      block.text = new Uint8Array(0);
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
