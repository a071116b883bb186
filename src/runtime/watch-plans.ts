import { create, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import {
  RuntimeEventSchema,
  type RuntimeEvent,
  type RuntimeSnapshotSchema,
  WorkerEventSchema,
  type WorkerEvent,
} from "../../gen/worker_runtime/v1/events_pb.js";
import {
  WatchRuntimeResponseSchema,
  type WatchWorkerResponse,
  WatchWorkerResponseSchema,
} from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import { decodeCursor, encodeCursor } from "./cursor.js";
import { RuntimeError } from "./errors.js";
import type { DurableEventStream } from "./event-stream.js";
import type { Limits } from "./limits.js";
import { readOfWorker, watchOfWorker } from "./pending-delete.js";
import { ResponseBudget, responseBudgetBytes } from "./message-budget.js";
import type { RuntimeStore, StoredEvent } from "./store.js";
import { typedStoreErrors } from "./store-errors.js";
import type { Subscription } from "./subscription.js";
import { checkResumePoint, runWatch, type WatchOptions, type WatchPlan } from "./watch.js";
import type { WorkerSession } from "./worker-session.js";

/** How live batches are paced. */
export interface LivePacing {
  heartbeatMs: number;
  maxEventsPerMessage: number;
  /** Bytes the events of one message may take. */
  maxBatchBytes: number;
}

/**
 * Opens a WatchWorker: its plan, run. An opening that meets the worker's
 * delete part-way through (the store no longer knows the worker when the
 * resume point is checked) waits for the delete's outcome and ends with
 * NOT_FOUND, or opens again once the delete failed (pending-delete.ts).
 */
export function openWorkerWatch(
  session: WorkerSession,
  afterCursor: string,
  store: RuntimeStore,
  subscribe: () => Subscription<WorkerEvent>,
  pacing: LivePacing & Pick<WatchPlan<typeof WorkerEventSchema, typeof WatchWorkerResponseSchema>, "delivered">,
  options: WatchOptions,
): AsyncGenerator<WatchWorkerResponse> {
  const open = () => runWatch(workerWatchPlan(session, afterCursor, store, subscribe, pacing), options);
  return watchOfWorker(session.events, open, options.signal);
}

/**
 * The WatchWorker plan: the resume cursor checked against retention, the
 * subscription taken and the snapshot cut in the same tick (both at the
 * delivery point), stored events read through the typed store errors.
 */
function workerWatchPlan(
  session: WorkerSession,
  afterCursor: string,
  store: RuntimeStore,
  subscribe: () => Subscription<WorkerEvent>,
  pacing: LivePacing,
): WatchPlan<typeof WorkerEventSchema, typeof WatchWorkerResponseSchema> {
  const cursors = session.events.cursorStream;
  const afterSeq = decodeCursor("after_cursor", cursors, afterCursor);
  const delivered = session.events.lastDeliveredSeq;
  checkResumePoint(cursors, afterSeq, store.earliestEventSeq(session.workerId), delivered);
  const subscription = subscribe();
  const first = create(WatchWorkerResponseSchema, { snapshot: session.snapshot() });
  try {
    // The limits keep a snapshot within a message; if a configuration does not, say so with a typed error.
    new ResponseBudget(pacing.maxBatchBytes).take(toBinary(WatchWorkerResponseSchema, first).byteLength);
  } catch (error) {
    subscription.close();
    throw error;
  }
  return {
    stream: cursors,
    eventSchema: WorkerEventSchema,
    responseSchema: WatchWorkerResponseSchema,
    eventsFieldNo: 1,
    first,
    subscription,
    afterSeq,
    snapshotSeq: delivered,
    readStored: (after, limit) => readWorkerEvents(session, store, after, limit),
    earliestSeq: () => store.earliestEventSeq(session.workerId),
    withEvents: (events) => create(WatchWorkerResponseSchema, { events }),
    heartbeat: (cursor) => create(WatchWorkerResponseSchema, { heartbeat: { cursor } }),
    ...pacing,
  };
}

/**
 * A worker's stored events for a replay. Once its delete has begun, the
 * store may no longer know it or hold a gap: the replay ends as the
 * worker's live streams do, with the delete's outcome (pending-delete.ts:
 * NOT_FOUND once the store has deleted the worker; read again once the
 * delete failed), not with the store's "unknown worker" (INTERNAL) or an
 * expired cursor.
 */
function readWorkerEvents(session: WorkerSession, store: RuntimeStore, after: bigint, limit: number): Promise<StoredEvent[]> {
  const read = () => typedStoreErrors(store.readEvents(session.workerId, after, limit));
  return readOfWorker(session.events, read, (stored) => stored[0]?.seq === after + 1n);
}

/** The WatchRuntime plan: like {@link workerWatchPlan}, over the runtime-wide stream. */
export function runtimeWatchPlan(
  events: DurableEventStream<RuntimeEvent>,
  afterCursor: string,
  store: RuntimeStore,
  snapshot: (cursor: string) => MessageInitShape<typeof RuntimeSnapshotSchema>,
  limits: Limits,
): WatchPlan<typeof RuntimeEventSchema, typeof WatchRuntimeResponseSchema> {
  const cursors = events.cursorStream;
  const afterSeq = decodeCursor("after_cursor", cursors, afterCursor);
  const delivered = events.lastDeliveredSeq;
  checkResumePoint(cursors, afterSeq, store.earliestRuntimeEventSeq(), delivered);
  if (events.subscriberCount >= limits.maxWatchersPerWorker) {
    throw new RuntimeError(Code.ResourceExhausted, ErrorReason.LIMIT_EXCEEDED, "too many WatchRuntime streams", {
      limit: String(limits.maxWatchersPerWorker),
    });
  }
  const subscription = events.subscribe();
  return {
    stream: cursors,
    eventSchema: RuntimeEventSchema,
    responseSchema: WatchRuntimeResponseSchema,
    eventsFieldNo: 1,
    first: create(WatchRuntimeResponseSchema, { snapshot: snapshot(encodeCursor(cursors, delivered)) }),
    subscription,
    afterSeq,
    snapshotSeq: delivered,
    readStored: (after, limit) => typedStoreErrors(store.readRuntimeEvents(after, limit)),
    earliestSeq: () => store.earliestRuntimeEventSeq(),
    withEvents: (events) => create(WatchRuntimeResponseSchema, { events }),
    heartbeat: (cursor) => create(WatchRuntimeResponseSchema, { heartbeat: { cursor } }),
    heartbeatMs: limits.heartbeatIntervalMs,
    maxEventsPerMessage: limits.maxEventsPerMessage,
    maxBatchBytes: responseBudgetBytes(limits),
  };
}
