import type { MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import {
  GetConfigBundleRequestSchema,
  GetRuntimeRequestSchema,
  ListAllocationsRequestSchema,
  ListConfigBundlesRequestSchema,
  ListDiagnosticsRequestSchema,
  PutConfigBundleRequestSchema,
} from "../../gen/worker_runtime/v1/runtime_management_pb.js";
import {
  CreateWorkerRequestSchema,
  DeleteWorkerRequestSchema,
  GetWorkerRequestSchema,
  ListWorkersRequestSchema,
  StopWorkerRequestSchema,
} from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import {
  CancelRunRequestSchema,
  GetRunRequestSchema,
  ListRunsRequestSchema,
  ResolveApprovalRequestSchema,
  SendInputRequestSchema,
  StreamInputRequestSchema,
} from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import {
  ReadTranscriptRequestSchema,
  WatchRuntimeRequestSchema,
  WatchWorkerRequestSchema,
} from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import { requestMessage } from "./request-message.js";

/**
 * The request message type of each Runtime method that takes one (the RPC
 * of the same name's), so that the facade turns what a caller passed into
 * that message by the method's name, in one place (request-message.ts).
 */
export const REQUEST_SCHEMAS = {
  getRuntime: GetRuntimeRequestSchema,
  listDiagnostics: ListDiagnosticsRequestSchema,
  listAllocations: ListAllocationsRequestSchema,
  putConfigBundle: PutConfigBundleRequestSchema,
  getConfigBundle: GetConfigBundleRequestSchema,
  listConfigBundles: ListConfigBundlesRequestSchema,
  createWorker: CreateWorkerRequestSchema,
  getWorker: GetWorkerRequestSchema,
  listWorkers: ListWorkersRequestSchema,
  stopWorker: StopWorkerRequestSchema,
  deleteWorker: DeleteWorkerRequestSchema,
  sendInput: SendInputRequestSchema,
  streamInput: StreamInputRequestSchema,
  cancelRun: CancelRunRequestSchema,
  resolveApproval: ResolveApprovalRequestSchema,
  getRun: GetRunRequestSchema,
  listRuns: ListRunsRequestSchema,
  readTranscript: ReadTranscriptRequestSchema,
  watchWorker: WatchWorkerRequestSchema,
  watchRuntime: WatchRuntimeRequestSchema,
} as const;

/** A Runtime method that takes a request message. */
export type RequestMethod = keyof typeof REQUEST_SCHEMAS;

/** The request a method works on, from the message or its init shape; bounded by `maxValues` (the runtime's `maxMessageBytes`). */
export function requestReader(
  maxValues: number,
): <M extends RequestMethod>(
  method: M,
  request: MessageInitShape<(typeof REQUEST_SCHEMAS)[M]>,
) => MessageShape<(typeof REQUEST_SCHEMAS)[M]> {
  return (method, request) => requestMessage(REQUEST_SCHEMAS[method], request, maxValues);
}
