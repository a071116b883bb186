import type { DescMessage, MessageShape } from "@bufbuild/protobuf";
import { create, fromBinary } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { HeartbeatSchema } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import type { WorkerEvent } from "../../gen/worker_runtime/v1/events_pb.js";
import type { Run } from "../../gen/worker_runtime/v1/run_pb.js";
import { type StreamInputResponse, StreamInputResponseSchema } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import { encodeCursor, type CursorStream } from "./cursor.js";
import { RuntimeError } from "./errors.js";
import { TERMINAL_RUN_STATUSES } from "./in-flight.js";
import type { PendingDelete } from "./pending-delete.js";
import type { StoredEvent } from "./store.js";
import type { StreamItem, Subscription } from "./subscription.js";
import { splitByBytes } from "./message-budget.js";
import { encodedBatch } from "./wire-batch.js";

/** Events read by a replay's first store read; later reads follow the events' sizes. */
const FIRST_REPLAY_READ = 64;

/** Options every watch takes. */
export interface WatchOptions {
  /** Ends the watch and releases everything it holds when aborted. */
  signal: AbortSignal;
  /**
   * Set when the response is sent in the protobuf binary encoding: events
   * are then passed as pre-encoded bytes (see wire-batch.ts). Leave unset
   * for JSON or in-process consumers, which get decoded events.
   */
  binary?: boolean;
}

/** How to build one stream's messages. */
export interface WatchPlan<E extends DescMessage, R extends DescMessage> {
  stream: CursorStream;
  eventSchema: E;
  responseSchema: R;
  /** Number of the response's repeated events field. */
  eventsFieldNo: number;
  /** The first message (snapshot), built when the subscription is taken. */
  first: MessageShape<R>;
  subscription: Subscription<MessageShape<E>>;
  /** Resume point: replay stored events after this seq up to the snapshot. */
  afterSeq: bigint | undefined;
  /** Seq the snapshot reflects (the stream's delivery point at subscribe). */
  snapshotSeq: bigint;
  readStored(afterSeq: bigint, limit: number): Promise<StoredEvent[]>;
  /** Oldest retained seq, for the error when replay finds history gone. */
  earliestSeq(): bigint;
  /** Builds a response holding decoded events (JSON consumers). */
  withEvents(events: MessageShape<E>[]): MessageShape<R>;
  /** Builds a heartbeat response. */
  heartbeat(cursor: string): MessageShape<R>;
  heartbeatMs: number;
  maxEventsPerMessage: number;
  /** Bytes the events of one message may take (see message-budget.ts). */
  maxBatchBytes: number;
  /** Told the size of each batch, replayed or live (metrics); absent = not counted. */
  delivered?: ((count: number) => void) | undefined;
}

/**
 * Runs one watch: snapshot first (at once, so headers go out), then the
 * stored events between the resume cursor and the snapshot, then live
 * events in batches, with heartbeats when idle. The subscription is closed
 * on the abort signal itself, not only in `finally`, because a generator
 * whose client went away may never be resumed (see CONVENTIONS.md).
 */
export async function* runWatch<E extends DescMessage, R extends DescMessage>(
  plan: WatchPlan<E, R>,
  options: WatchOptions,
): AsyncGenerator<MessageShape<R>> {
  // The plan's fields are read once: plans reach here in many object shapes (spread copies), so
  // reading them per message was a megamorphic property load that missed V8's cache every time.
  const { subscription, heartbeatMs, maxEventsPerMessage, maxBatchBytes, delivered } = plan;
  const { signal } = options;
  const respond = responder(plan, options);
  // Set with the abort, so the live loop does not read the signal (another megamorphic load) per message.
  let aborted = signal.aborted;
  const release = (): void => {
    aborted = true;
    subscription.close();
  };
  signal.addEventListener("abort", release, { once: true });
  try {
    if (aborted) return;
    yield plan.first;
    let lastSeq = plan.snapshotSeq;
    if (plan.afterSeq !== undefined) {
      let after = plan.afterSeq;
      // Reads are sized by the events seen so far, so a replay of large events holds about two messages' worth.
      let readCount = Math.min(maxEventsPerMessage, FIRST_REPLAY_READ);
      while (after < plan.snapshotSeq && !aborted) {
        const stored = await plan.readStored(after, Math.min(readCount, Number(plan.snapshotSeq - after)));
        // Retention may have moved on since the cursor was checked: never skip silently.
        if (stored[0]?.seq !== after + 1n) throw cursorExpired(plan.stream, plan.earliestSeq());
        const upToSnapshot = stored.filter((item) => item.seq <= plan.snapshotSeq);
        after = upToSnapshot[upToSnapshot.length - 1]?.seq ?? plan.snapshotSeq;
        const averageBytes = stored.reduce((sum, item) => sum + item.bytes.byteLength, 0) / stored.length;
        readCount = Math.max(1, Math.min(maxEventsPerMessage, Math.floor((2 * maxBatchBytes) / averageBytes)));
        delivered?.(upToSnapshot.length);
        for (const part of bySize(upToSnapshot, maxBatchBytes)) yield respond(part);
      }
    }
    // The live loop waits on the subscription itself (not through liveBatches): one generator less per message.
    while (!aborted) {
      const waiting = subscription.wait(heartbeatMs, signal);
      if (waiting) await waiting;
      const wait = subscription.poll(maxEventsPerMessage, maxBatchBytes, signal);
      if (wait.kind === "closed") {
        if (wait.error) throw wait.error;
        return;
      }
      if (wait.kind === "idle") {
        yield plan.heartbeat(encodeCursor(plan.stream, lastSeq));
        continue;
      }
      const batch = wait.items;
      delivered?.(batch.length);
      for (const item of batch) if (item.seq > 0n) lastSeq = item.seq;
      // One message: the subscription hands over only batches that fit maxBatchBytes (subscription.ts).
      yield respond(batch);
    }
  } finally {
    signal.removeEventListener("abort", release);
    subscription.close();
  }
}

/** How to run one StreamInput. */
export interface InputStreamPlan {
  /** The worker's event subscription, taken before the input is sent so nothing is missed. */
  subscription: Subscription<WorkerEvent>;
  /** Sends the input; the run it returns is the one followed. */
  send(): Promise<Run>;
  /** The worker's delete, once one has begun: a run that ends meanwhile was ended by it. */
  deleting?(): PendingDelete | undefined;
  heartbeatMs: number;
  maxEventsPerMessage: number;
  /** Bytes the events of one message may take (see message-budget.ts). */
  maxBatchBytes: number;
  /** Told the size of each live batch (metrics); absent = not counted. */
  delivered?: ((count: number) => void) | undefined;
}

/**
 * Runs one StreamInput: sends the input, answers with the accepted run,
 * then streams that run's events (only its own) until it ends, with
 * heartbeats when idle. A run ended by its worker's delete is followed by
 * the delete's outcome, told once the store has settled it (heartbeats
 * meanwhile): NOT_FOUND, or the failure that kept the worker. Released on
 * abort like {@link runWatch}.
 */
export async function* runInputStream(plan: InputStreamPlan, options: WatchOptions): AsyncGenerator<StreamInputResponse> {
  const { subscription } = plan;
  const { signal } = options;
  const release = (): void => subscription.close();
  signal.addEventListener("abort", release, { once: true });
  try {
    const run = await plan.send();
    yield create(StreamInputResponseSchema, { run });
    if (TERMINAL_RUN_STATUSES.has(run.status)) return;
    let awaitingDelete = false;
    for await (const batch of liveBatches(
      subscription,
      plan.maxEventsPerMessage,
      plan.maxBatchBytes,
      plan.heartbeatMs,
      signal,
      plan.delivered,
    )) {
      if (batch === "idle") {
        yield create(StreamInputResponseSchema, { heartbeat: create(HeartbeatSchema) });
        continue;
      }
      if (awaitingDelete) continue;
      const own: StreamItem<WorkerEvent>[] = [];
      let ended = false;
      for (const item of batch) {
        const event = item.event;
        if (!event || runIdOf(event) !== run.runId) continue;
        own.push(item);
        if (event.kind.case === "runChanged" && TERMINAL_RUN_STATUSES.has(event.kind.value.status)) ended = true;
      }
      // Part of a batch the subscription cut to fit one message, so it fits too.
      if (own.length > 0) yield create(StreamInputResponseSchema, { events: own.map((item) => item.event as WorkerEvent) });
      if (ended) {
        // Ended by its worker's delete: the delete's outcome closes the subscription, and liveBatches throws it.
        const deleting = plan.deleting?.();
        if (!deleting) return;
        awaitingDelete = true;
        void deleting.outcome.then((error) => subscription.closeAfterQueued(error));
      }
    }
  } finally {
    signal.removeEventListener("abort", release);
    subscription.close();
  }
}

/**
 * The live part every stream shares: batches from the subscription, or
 * "idle" when nothing came within the heartbeat interval, until the
 * subscription closes (its error, e.g. SUBSCRIBER_TOO_SLOW, is thrown) or
 * the signal aborts.
 */
async function* liveBatches<E>(
  subscription: Subscription<E>,
  maxItems: number,
  maxBytes: number,
  heartbeatMs: number,
  signal: AbortSignal,
  delivered: ((count: number) => void) | undefined,
): AsyncGenerator<StreamItem<E>[] | "idle"> {
  while (!signal.aborted) {
    const wait = await subscription.next(maxItems, maxBytes, heartbeatMs, signal);
    if (wait.kind === "closed") {
      if (wait.error) throw wait.error;
      return;
    }
    if (wait.kind === "idle") {
      yield "idle";
      continue;
    }
    delivered?.(wait.items.length);
    yield wait.items;
  }
}

/** A replay's read (sized by count) cut into messages that fit the message limit, in order. */
function bySize<T extends { bytes: Uint8Array }>(items: readonly T[], maxBatchBytes: number): T[][] {
  return splitByBytes(items, (item) => item.bytes.byteLength, maxBatchBytes);
}

/** The run an event belongs to, if any. */
function runIdOf(event: WorkerEvent): string | undefined {
  const kind = event.kind;
  switch (kind.case) {
    case "runChanged":
    case "transcriptAppended":
    case "textDelta":
    case "reasoningDelta":
    case "toolCallDelta":
    case "blockDiscarded":
    case "retryScheduled":
      return kind.value.runId;
    default:
      return undefined;
  }
}

/** Builds one response from a batch of items: pre-encoded for the binary encoding, decoded events otherwise. */
function responder<E extends DescMessage, R extends DescMessage>(
  plan: WatchPlan<E, R>,
  options: WatchOptions,
): (items: readonly StreamItem<MessageShape<E>>[]) => MessageShape<R> {
  const { responseSchema, eventsFieldNo, eventSchema } = plan;
  if (options.binary) return (items) => encodedBatch(responseSchema, eventsFieldNo, items);
  return (items) => plan.withEvents(items.map((item) => (item.event ??= fromBinary(eventSchema, item.bytes))));
}

/**
 * Checks a resume cursor against what the stream retains: older than
 * retention is OUT_OF_RANGE with the earliest cursor; newer than anything
 * delivered is INVALID_ARGUMENT.
 */
export function checkResumePoint(stream: CursorStream, afterSeq: bigint | undefined, earliestSeq: bigint, deliveredSeq: bigint): void {
  if (afterSeq === undefined) return;
  if (afterSeq > deliveredSeq) {
    throw new RuntimeError(Code.InvalidArgument, ErrorReason.INVALID_ARGUMENT, "after_cursor: is ahead of the stream", {
      field: "after_cursor",
    });
  }
  if (afterSeq + 1n < earliestSeq) throw cursorExpired(stream, earliestSeq);
}

/** OUT_OF_RANGE with the earliest cursor that can still be resumed from. */
function cursorExpired(stream: CursorStream, earliestSeq: bigint): RuntimeError {
  return new RuntimeError(
    Code.OutOfRange,
    ErrorReason.CURSOR_EXPIRED,
    "after_cursor: is older than retained history; re-sync from a snapshot",
    { earliest_cursor: encodeCursor(stream, earliestSeq - 1n) },
  );
}
