import { create, fromBinary, type UnknownField } from "@bufbuild/protobuf";
import { BinaryReader } from "@bufbuild/protobuf/wire";
import type { ContextValues } from "@connectrpc/connect";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { WorkerSnapshotSchema, type WorkerEvent, type WorkerSnapshot } from "../../gen/worker_runtime/v1/events_pb.js";
import type { Run } from "../../gen/worker_runtime/v1/run_pb.js";
import { WatchWorkerResponseSchema, type WatchWorkerResponse } from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import { EVENTS, SNAPSHOT } from "./raw-watch.js";
import { rawWorkerChange, RecentIds } from "./raw-worker-event.js";
import { RelayedWorkerView } from "./relayed-worker-view.js";
import type { RuntimeConnection } from "./runtime-connection.js";
import { changeOf } from "./shown-change.js";
import type { ShownState } from "./watch-relay.js";

/** Deadline of the GetRun that reads a run which ended unseen while the upstream was away. */
const ENDED_RUN_TIMEOUT_MS = 5_000;

/** What a JSON client of a relayed WatchWorker was shown (decoded messages). */
export function decodedWorkerShown(worker: WorkerRef | undefined, values: ContextValues): ShownState<WatchWorkerResponse> {
  const view = new RelayedWorkerView();
  return shownState(worker, values, view, (message) => {
    if (message.snapshot) view.reset(message.snapshot);
    for (const event of message.events) view.apply(changeOf(event));
  });
}

/** What a binary client of a relayed WatchWorker was shown (undecoded messages, see raw-watch.ts). */
export function rawWorkerShown(worker: WorkerRef | undefined, values: ContextValues | undefined): ShownState<WatchWorkerResponse> {
  const ids = new RecentIds();
  const view = new RelayedWorkerView();
  return shownState(worker, values, view, (message) => {
    for (const field of message.$unknown ?? []) {
      if (field.no === EVENTS) view.apply(rawWorkerChange(field.data, ids));
      else if (field.no === SNAPSHOT) view.reset(decodedSnapshot(field));
    }
  });
}

/**
 * What a client of a relayed WatchWorker was shown, kept in `view`:
 * `note` takes in each message relayed to it, and the catch-ups are built
 * from the view (`caughtUp` is told their events in the tick they are
 * applied to it). The Backend's shared upstream WatchWorker passes its own
 * view, which holds the text (shared-worker-watch.ts).
 */
export function shownState(
  worker: WorkerRef | undefined,
  values: ContextValues | undefined,
  view: RelayedWorkerView,
  note: (message: WatchWorkerResponse) => void,
  caughtUp?: (events: WorkerEvent[]) => void,
): ShownState<WatchWorkerResponse> {
  return {
    note,
    async catchUp(message, connection, signal) {
      const snapshot = message.snapshot ?? snapshotField(message);
      if (!snapshot) return undefined;
      const events = await view.catchUp(snapshot, (runId) => endedRun(connection, worker, runId, values, signal), caughtUp);
      return events.length === 0 ? undefined : create(WatchWorkerResponseSchema, { events });
    },
  };
}

/**
 * The run as the Runtime has it now. A failed read throws: the relay then
 * treats it as an upstream failure and tries again once it has resumed
 * (watch-relay.ts), rather than leave the run open on the client for good.
 */
async function endedRun(
  connection: RuntimeConnection,
  worker: WorkerRef | undefined,
  runId: string,
  values: ContextValues | undefined,
  signal: AbortSignal,
): Promise<Run | undefined> {
  const options = { signal, timeoutMs: ENDED_RUN_TIMEOUT_MS, ...(values ? { contextValues: values } : {}) };
  return (await connection.clients.interaction.getRun({ worker, runId }, options)).run;
}

function snapshotField(message: WatchWorkerResponse): WorkerSnapshot | undefined {
  const field = (message.$unknown ?? []).find((f) => f.no === SNAPSHOT);
  return field ? decodedSnapshot(field) : undefined;
}

/** The snapshot an undecoded message's field holds. */
export function decodedSnapshot(field: UnknownField): WorkerSnapshot {
  return fromBinary(WorkerSnapshotSchema, new BinaryReader(field.data).bytes());
}
