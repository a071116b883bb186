import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { Code } from "@connectrpc/connect";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { type TranscriptEntry, TranscriptEntrySchema } from "../../gen/worker_runtime/v1/transcript_pb.js";
import { encodedSizeAtMost } from "./encoded-size-bound.js";
import { RuntimeError } from "./errors.js";
import type { ByteBounds } from "./limits.js";

/** The largest seq an entry can have, so a measured entry is never smaller than the committed one. */
const MAX_SEQ = 0xffff_ffff_ffff_ffffn;
/** An entry's seq (at most 11 bytes with its tag) and creation time (at most 2 + 11 + 6). */
const ENTRY_FIXED_BYTES = 11 + 19;

/**
 * Keeps one run's output within what the runtime can deliver, whatever the
 * execution backend's own caps: a committed entry must fit one event
 * (`maxEntryBytes`), and the output streamed but not yet committed plus
 * the arguments of a tool call awaiting approval — all of which a
 * watcher's snapshot carries — stay within `maxInFlightBytes`, and those
 * arguments with the run's input within what a run may hold. Past any,
 * the sink call throws LIMIT_EXCEEDED and the run fails with that reason.
 */
export class RunOutputBounds {
  /** Bytes streamed per in-flight block. */
  private readonly blocks = new Map<string, number>();
  private inFlight = 0;

  /**
   * `inputText`: the run's input (measured only when a call awaits
   * approval, not per run); `payloadRoom`: what
   * the input and a pending call's arguments may take together for the run
   * to fit one message (limits.ts, runPayloadRoom).
   */
  constructor(
    private readonly runId: string,
    private readonly bounds: ByteBounds,
    private readonly inputText: string,
    private readonly payloadRoom: number,
  ) {}

  /** Counts `text` streamed into a block. */
  delta(blockId: string, text: string): void {
    const bytes = Buffer.byteLength(text, "utf8") + (this.blocks.has(blockId) ? 0 : Buffer.byteLength(blockId, "utf8"));
    if (this.inFlight + bytes > this.bounds.maxInFlightBytes) {
      throw exceeded(
        `run ${this.runId} streamed more than ${this.bounds.maxInFlightBytes} bytes not yet committed`,
        this.bounds.maxInFlightBytes,
      );
    }
    this.blocks.set(blockId, (this.blocks.get(blockId) ?? 0) + bytes);
    this.inFlight += bytes;
  }

  /** A block was committed or discarded: it is no longer in flight. */
  settle(blockId: string): void {
    const bytes = this.blocks.get(blockId);
    if (bytes === undefined) return;
    this.blocks.delete(blockId);
    this.inFlight -= bytes;
  }

  /** Refuses an entry that could not be delivered in one event. */
  checkEntry(content: TranscriptEntry["content"], blockId: string): void {
    // Most entries are far below the bound: encoding them only to count their bytes was a per-run cost.
    if (encodedSizeAtMost({ runId: this.runId, blockId, content }) + ENTRY_FIXED_BYTES <= this.bounds.maxEntryBytes) return;
    const entry = create(TranscriptEntrySchema, {
      seq: MAX_SEQ,
      runId: this.runId,
      createdAt: timestampFromDate(new Date()),
      blockId,
      content,
    });
    const bytes = toBinary(TranscriptEntrySchema, entry).byteLength;
    if (bytes > this.bounds.maxEntryBytes) {
      throw exceeded(
        `run ${this.runId} committed an entry of ${bytes} bytes; at most ${this.bounds.maxEntryBytes} can be delivered`,
        this.bounds.maxEntryBytes,
      );
    }
  }

  /**
   * Refuses a tool call awaiting approval whose arguments, with what is in
   * flight, pass the in-flight bound, or with the run's input make a run
   * (and so its run_changed event) larger than one message.
   */
  checkPending(argumentsJson: string): void {
    const bytes = Buffer.byteLength(argumentsJson, "utf8");
    if (this.inFlight + bytes > this.bounds.maxInFlightBytes) {
      throw exceeded(
        `run ${this.runId} asked approval for ${bytes} bytes of arguments; at most ${this.bounds.maxInFlightBytes} fit`,
        this.bounds.maxInFlightBytes,
      );
    }
    const inputBytes = Buffer.byteLength(this.inputText, "utf8");
    if (inputBytes + bytes > this.payloadRoom) {
      throw exceeded(
        `run ${this.runId} asked approval for ${bytes} bytes of arguments; with its input (${inputBytes} bytes) a run holds at most ${this.payloadRoom}`,
        this.payloadRoom,
      );
    }
  }
}

function exceeded(message: string, limit: number): RuntimeError {
  return new RuntimeError(Code.ResourceExhausted, ErrorReason.LIMIT_EXCEEDED, message, { limit: String(limit) });
}
