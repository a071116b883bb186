import {
  create,
  type DescMessage,
  type DescMethodServerStreaming,
  type MessageInitShape,
  type MessageShape,
  type UnknownField,
} from "@bufbuild/protobuf";
import { EmptySchema } from "@bufbuild/protobuf/wkt";
import { BinaryReader } from "@bufbuild/protobuf/wire";
import type { ContextValues, Transport } from "@connectrpc/connect";
import {
  WatchRuntimeResponseSchema,
  WatchWorkerResponseSchema,
  WorkerObservation,
  type WatchRuntimeRequest,
  type WatchRuntimeResponse,
  type WatchWorkerRequest,
  type WatchWorkerResponse,
} from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import type { RuntimeConnection } from "./runtime-connection.js";
import type { ResumableWatch, ShownState } from "./watch-relay.js";
import { rawWorkerShown } from "./worker-watch-catch-up.js";

/**
 * A relayed watch forwards a Runtime's events unchanged, and decoding then
 * re-encoding every event was most of the relay's cost. So, for binary
 * clients, the Backend reads each upstream message as
 * google.protobuf.Empty (every field stays in `$unknown` as its wire
 * bytes) and sends the same entries on as unknown fields of its own
 * response, which protobuf-es writes verbatim: on the wire they are the
 * ordinary `events` (1), `snapshot` (2) and `heartbeat` (3). The relay
 * reads only what it needs to resume: the cursor of the last durable
 * event (WorkerEvent / RuntimeEvent field 2), of a heartbeat (field 1)
 * and of a snapshot (WorkerSnapshot field 5, RuntimeSnapshot field 2).
 */
export const EVENTS = 1;
export const SNAPSHOT = 2;
export const HEARTBEAT = 3;
export const EVENT_CURSOR = 2;
const HEARTBEAT_CURSOR = 1;

const rawWatchWorker: DescMethodServerStreaming<typeof WorkerObservation.method.watchWorker.input, typeof EmptySchema> = {
  ...WorkerObservation.method.watchWorker,
  output: EmptySchema,
};
const rawWatchRuntime: DescMethodServerStreaming<typeof WorkerObservation.method.watchRuntime.input, typeof EmptySchema> = {
  ...WorkerObservation.method.watchRuntime,
  output: EmptySchema,
};

/** WatchWorker relayed without decoding events; `values`: the served call's context values (its request id goes on). */
export function rawWorkerWatch(request: WatchWorkerRequest, values?: ContextValues): ResumableWatch<WatchWorkerResponse> {
  return rawWatch(
    WatchWorkerResponseSchema,
    5,
    (c, cursor, signal) => openRaw(c.transport, rawWatchWorker, { worker: request.worker, afterCursor: cursor }, signal, values),
    () => rawWorkerShown(request.worker, values),
  );
}

/** WatchRuntime relayed without decoding events; `values` as for {@link rawWorkerWatch}. */
export function rawRuntimeWatch(request: WatchRuntimeRequest, values?: ContextValues): ResumableWatch<WatchRuntimeResponse> {
  return rawWatch(WatchRuntimeResponseSchema, 2, (c, cursor, signal) =>
    openRaw(c.transport, rawWatchRuntime, { runtimeId: request.runtimeId, afterCursor: cursor }, signal, values),
  );
}

function rawWatch<S extends typeof WatchWorkerResponseSchema | typeof WatchRuntimeResponseSchema>(
  schema: S,
  snapshotCursorField: number,
  open: (connection: RuntimeConnection, cursor: string, signal: AbortSignal) => AsyncIterable<UnknownField[]>,
  shown?: () => ShownState<MessageShape<S>>,
): ResumableWatch<MessageShape<S>> {
  const wrap = (fields: UnknownField[]): MessageShape<S> => {
    const message = create(schema as DescMessage) as MessageShape<S>;
    message.$unknown = fields;
    return message;
  };
  return {
    open: async function* (connection, cursor, signal) {
      for await (const fields of open(connection, cursor, signal)) yield wrap(fields);
    },
    cursorOf: (message) => {
      const fields = message.$unknown ?? [];
      for (let i = fields.length - 1; i >= 0; i--) {
        const field = fields[i] as UnknownField;
        if (field.no === EVENTS || field.no === HEARTBEAT) {
          const cursor = stringField(field.data, field.no === EVENTS ? EVENT_CURSOR : HEARTBEAT_CURSOR);
          if (cursor) return cursor;
        }
      }
      return undefined;
    },
    hasEvents: (message) => (message.$unknown ?? []).some((field) => field.no === EVENTS),
    snapshotCursor: (message) => {
      const snapshot = (message.$unknown ?? []).find((field) => field.no === SNAPSHOT);
      return snapshot ? stringField(snapshot.data, snapshotCursorField) || undefined : undefined;
    },
    withoutSnapshot: (message) => {
      const fields = (message.$unknown ?? []).filter((field) => field.no !== SNAPSHOT);
      return fields.length === 0 ? undefined : wrap(fields);
    },
    heartbeat: (cursor) => create(schema as DescMessage, { heartbeat: { cursor } }) as MessageShape<S>,
    ...(shown ? { shown } : {}),
  };
}

async function* openRaw<I extends DescMessage>(
  transport: Transport,
  method: DescMethodServerStreaming<I, typeof EmptySchema>,
  request: MessageInitShape<I>,
  signal: AbortSignal,
  values: ContextValues | undefined,
): AsyncIterable<UnknownField[]> {
  async function* once(): AsyncIterable<MessageInitShape<I>> {
    yield request;
  }
  const response = await transport.stream(method, signal, undefined, undefined, once(), values);
  for await (const message of response.message) yield message.$unknown ?? [];
}

/** The string field `fieldNo` of a length-delimited message entry, or "" when absent. */
export function stringField(lengthDelimited: Uint8Array, fieldNo: number): string {
  const reader = new BinaryReader(lengthDelimited);
  const end = reader.uint32() + reader.pos;
  while (reader.pos < end) {
    const [no, wireType] = reader.tag();
    if (no === fieldNo) return reader.string();
    reader.skip(wireType, no);
  }
  return "";
}
