import { create } from "@bufbuild/protobuf";
import type { HandlerContext, ServiceImpl } from "@connectrpc/connect";
import { type RuntimeManagement, GetRuntimeResponseSchema } from "../../gen/worker_runtime/v1/runtime_management_pb.js";
import {
  type WorkerCatalog,
  DeleteWorkerResponseSchema,
  GetWorkerResponseSchema,
  StopWorkerResponseSchema,
} from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import {
  type WorkerInteraction,
  CancelRunResponseSchema,
  GetRunResponseSchema,
  ResolveApprovalResponseSchema,
  SendInputResponseSchema,
} from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import type { WorkerObservation } from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import type { Runtime, WatchOptions } from "../runtime/index.js";
import { inputOptionsOf } from "./log-context.js";
import { isBinaryRequest } from "./binary-request.js";

/**
 * The four v1 services, as thin adapters over the Runtime: every method
 * takes the generated request, calls the Runtime method of the same name
 * and wraps the result in its response. Validation and behaviour live in
 * the Runtime, so embedded and remote callers get the same API. A call that
 * may start a run hands the Runtime its log fields (log-context.ts).
 */
export function createRuntimeManagementService(runtime: Runtime): ServiceImpl<typeof RuntimeManagement> {
  return {
    getRuntime: (request) => create(GetRuntimeResponseSchema, { runtime: runtime.getRuntime(request) }),
    listDiagnostics: (request) => runtime.listDiagnostics(request),
    listAllocations: (request) => runtime.listAllocations(request),
    putConfigBundle: (request) => runtime.putConfigBundle(request),
    getConfigBundle: (request) => runtime.getConfigBundle(request),
    listConfigBundles: (request) => runtime.listConfigBundles(request),
  };
}

/** See {@link createRuntimeManagementService}. */
export function createWorkerCatalogService(runtime: Runtime): ServiceImpl<typeof WorkerCatalog> {
  return {
    createWorker: (request) => runtime.createWorker(request),
    getWorker: (request) => create(GetWorkerResponseSchema, { worker: runtime.getWorker(request) }),
    listWorkers: (request) => runtime.listWorkers(request),
    stopWorker: async (request) => create(StopWorkerResponseSchema, { worker: await runtime.stopWorker(request) }),
    deleteWorker: async (request) => {
      await runtime.deleteWorker(request);
      return create(DeleteWorkerResponseSchema);
    },
  };
}

/** See {@link createRuntimeManagementService}. */
export function createWorkerInteractionService(runtime: Runtime): ServiceImpl<typeof WorkerInteraction> {
  return {
    sendInput: async (request, context) =>
      create(SendInputResponseSchema, { run: await runtime.sendInput(request, inputOptionsOf(context)) }),
    streamInput: (request, context) => runtime.streamInput(request, { ...watchOptions(context), ...inputOptionsOf(context) }),
    cancelRun: async (request) => create(CancelRunResponseSchema, { run: await runtime.cancelRun(request) }),
    resolveApproval: async (request, context) =>
      create(ResolveApprovalResponseSchema, { run: await runtime.resolveApproval(request, inputOptionsOf(context)) }),
    getRun: async (request) => create(GetRunResponseSchema, { run: await runtime.getRun(request) }),
    listRuns: (request) => runtime.listRuns(request),
  };
}

/** See {@link createRuntimeManagementService}. */
export function createWorkerObservationService(runtime: Runtime): ServiceImpl<typeof WorkerObservation> {
  return {
    readTranscript: (request) => runtime.readTranscript(request),
    watchWorker: (request, context) => runtime.watchWorker(request, watchOptions(context)),
    watchRuntime: (request, context) => runtime.watchRuntime(request, watchOptions(context)),
  };
}

/**
 * Watches pass pre-encoded events when the response is binary protobuf
 * (gRPC, gRPC-Web, Connect+proto) and decoded ones for JSON.
 */
function watchOptions(context: HandlerContext): WatchOptions {
  return { signal: context.signal, binary: isBinaryRequest(context.requestHeader) };
}
