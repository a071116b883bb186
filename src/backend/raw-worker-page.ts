import { create, fromBinary, type UnknownField } from "@bufbuild/protobuf";
import { EmptySchema } from "@bufbuild/protobuf/wkt";
import { BinaryReader } from "@bufbuild/protobuf/wire";
import type { ContextValues, Transport } from "@connectrpc/connect";
import type { RuntimeFailure } from "../../gen/worker_runtime/v1/backend_pb.js";
import {
  ListWorkersResponseSchema,
  WorkerCatalog,
  type ListWorkersRequest,
  type ListWorkersResponse,
} from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { WorkerSchema } from "../../gen/worker_runtime/v1/worker_pb.js";

/**
 * A fan-out page passes up to 500 Workers from a Runtime to the client
 * unchanged, and decoding then re-encoding them was most of what the
 * Backend added to a ListWorkers (about 2× a direct call). So the Backend
 * reads a Runtime's ListWorkersResponse as google.protobuf.Empty: every
 * field lands in `$unknown` verbatim, each Worker as its length-delimited
 * bytes. protobuf-es writes unknown fields verbatim, so the Backend's own
 * response carries those entries as ordinary `workers` (field 1) on the
 * wire. Only for binary responses: JSON clients get decoded Workers.
 */
const WORKERS_FIELD = 1;
const NEXT_PAGE_TOKEN_FIELD = 2;

/** ListWorkers with the response left undecoded. */
const rawListWorkers = { ...WorkerCatalog.method.listWorkers, output: EmptySchema };

/** One Runtime's page: its Workers as wire entries, and its next page token. */
export interface RawWorkerPage {
  workers: UnknownField[];
  nextPageToken: string;
}

/** Calls ListWorkers on `transport` without decoding the Workers. */
export async function listWorkersRaw(
  transport: Transport,
  request: ListWorkersRequest,
  options: { signal: AbortSignal; timeoutMs: number | undefined; contextValues?: ContextValues | undefined },
): Promise<RawWorkerPage> {
  const response = await transport.unary(rawListWorkers, options.signal, options.timeoutMs, undefined, request, options.contextValues);
  const fields = response.message.$unknown ?? [];
  let nextPageToken = "";
  const workers: UnknownField[] = [];
  for (const field of fields) {
    if (field.no === WORKERS_FIELD) workers.push(field);
    else if (field.no === NEXT_PAGE_TOKEN_FIELD) nextPageToken = new BinaryReader(field.data).string();
  }
  return { workers, nextPageToken };
}

/** The Backend's ListWorkersResponse around raw Worker entries; decoded when the client speaks JSON. */
export function workerPageResponse(
  workers: readonly UnknownField[],
  nextPageToken: string,
  failedRuntimes: RuntimeFailure[],
  binary: boolean,
): ListWorkersResponse {
  if (!binary) {
    return create(ListWorkersResponseSchema, {
      workers: workers.map((field) => fromBinary(WorkerSchema, new BinaryReader(field.data).bytes())),
      nextPageToken,
      failedRuntimes,
    });
  }
  const response = create(ListWorkersResponseSchema, { nextPageToken, failedRuntimes });
  response.$unknown = [...workers];
  return response;
}
