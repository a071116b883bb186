import { createFileRegistry, fromBinary, type DescFile, type FileRegistry } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ConnectRouter, type ContextValues, type Interceptor } from "@connectrpc/connect";
import { descriptorSetBase64 } from "../../gen/descriptor-set.js";
import { file_google_rpc_status } from "../../gen/google/rpc/status_pb.js";
import { file_grpc_health_v1_health, Health } from "../../gen/grpc/health/v1/health_pb.js";
import { file_grpc_reflection_v1_reflection, ServerReflection } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import {
  file_grpc_reflection_v1alpha_reflection,
  ServerReflection as ServerReflectionV1alpha,
} from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { file_worker_runtime_v1_errors } from "../../gen/worker_runtime/v1/errors_pb.js";
import { file_worker_runtime_v1_runtime_management, RuntimeManagement } from "../../gen/worker_runtime/v1/runtime_management_pb.js";
import { file_worker_runtime_v1_worker_catalog, WorkerCatalog } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { file_worker_runtime_v1_worker_interaction, WorkerInteraction } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import { file_worker_runtime_v1_worker_observation, WorkerObservation } from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import { childLogger, type Logger, type Runtime } from "../runtime/index.js";
import { toConnectError } from "./error-mapping.js";
import { createHealthService } from "./health.js";
import { logFieldsOf } from "./log-context.js";
import { createReflectionServices } from "./reflection.js";
import {
  createRuntimeManagementService,
  createWorkerCatalogService,
  createWorkerInteractionService,
  createWorkerObservationService,
} from "./services.js";

/** Every file the server exposes through reflection (dependencies follow from these). */
const SERVED_FILES: DescFile[] = [
  file_worker_runtime_v1_runtime_management,
  file_worker_runtime_v1_worker_catalog,
  file_worker_runtime_v1_worker_interaction,
  file_worker_runtime_v1_worker_observation,
  file_worker_runtime_v1_errors,
  file_google_rpc_status,
  file_grpc_health_v1_health,
  file_grpc_reflection_v1_reflection,
  file_grpc_reflection_v1alpha_reflection,
];

/** The services the server registers, by full name. */
export const SERVED_SERVICES: readonly string[] = [
  RuntimeManagement.typeName,
  WorkerCatalog.typeName,
  WorkerInteraction.typeName,
  WorkerObservation.typeName,
  Health.typeName,
  ServerReflection.typeName,
  ServerReflectionV1alpha.typeName,
];

/** Services whose calls get no span: health probes come every few seconds, reflection is tooling. */
export const UNTRACED_SERVICES: readonly string[] = [Health.typeName, ServerReflection.typeName, ServerReflectionV1alpha.typeName];

/**
 * Registers the four v1 services plus health and reflection on a router.
 * Separate from the server bootstrap so tests can mount the routes on an
 * in-memory transport.
 */
export function createRoutes(runtime: Runtime): (router: ConnectRouter) => void {
  const registry = reflectionRegistry(SERVED_FILES);
  const reflection = createReflectionServices(registry, SERVED_SERVICES);
  return (router) => {
    router.service(RuntimeManagement, createRuntimeManagementService(runtime));
    router.service(WorkerCatalog, createWorkerCatalogService(runtime));
    router.service(WorkerInteraction, createWorkerInteractionService(runtime));
    router.service(WorkerObservation, createWorkerObservationService(runtime));
    router.service(Health, createHealthService(runtime, SERVED_SERVICES));
    router.service(ServerReflection, reflection.v1);
    router.service(ServerReflectionV1alpha, reflection.v1alpha);
  };
}

/**
 * What reflection serves: every file of proto/ and its imports with their
 * source comments, from the descriptor set buf generate writes
 * (gen/descriptor-set.js), so grpcurl and `buf curl` show the documentation
 * written in the protos. The descriptors protoc-gen-es embeds in gen/ carry
 * no comments; they are the fallback should the set lack a served file.
 */
export function reflectionRegistry(files: DescFile[]): FileRegistry {
  const documented = createFileRegistry(fromBinary(FileDescriptorSetSchema, Buffer.from(descriptorSetBase64, "base64")));
  if (files.every((file) => documented.getFile(file.proto.name) !== undefined)) return documented;
  return registryOf(files);
}

/** A registry holding the given files and all of their dependencies (for reflection). */
function registryOf(files: DescFile[]): FileRegistry {
  const byName = new Map<string, DescFile>();
  const visit = (file: DescFile): void => {
    if (byName.has(file.proto.name)) return;
    byName.set(file.proto.name, file);
    file.dependencies.forEach(visit);
  };
  files.forEach(visit);
  return createFileRegistry(...[...byName.values()].map((file) => createFileRegistry(file.proto, (name) => byName.get(name))));
}

/**
 * Converts every error leaving a handler, unary or mid-stream, through the
 * one mapping function, so each carries our typed ErrorDetail. An internal
 * error's line carries the call's log fields (request id, trace and span
 * ids), which the logging interceptor outside it set: no ambient context
 * puts them there.
 */
export function createErrorInterceptor(logger: Logger): Interceptor {
  return (next) => async (request) => {
    try {
      const response = await next(request);
      if (!response.stream) return response;
      const callLogger = (): Logger => loggerOfCall(logger, request.contextValues);
      return { ...response, message: mapStreamErrors(response.message, request.signal, callLogger) };
    } catch (error) {
      throw toConnectError(error, loggerOfCall(logger, request.contextValues));
    }
  };
}

/** `logger` with the call's log fields, if it has any (only built when an error is logged). */
function loggerOfCall(logger: Logger, values: ContextValues): Logger {
  const fields = logFieldsOf(values);
  return fields ? childLogger(logger, fields) : logger;
}

/**
 * Maps a stream's errors, and ends a stream that stopped because its
 * deadline ran out with DEADLINE_EXCEEDED: the handlers stop quietly when
 * their signal aborts, and an OK ending would tell the client the stream
 * (a watch, a run) had ended normally.
 *
 * A plain iterator rather than an async generator: it sits on every
 * message of every stream, and `yield*` in an async generator costs
 * several promise turns per message where this costs one `then`.
 */
function mapStreamErrors<T>(messages: AsyncIterable<T>, signal: AbortSignal, loggerOf: () => Logger): AsyncIterable<T> {
  return {
    [Symbol.asyncIterator](): AsyncIterator<T> {
      const inner = messages[Symbol.asyncIterator]();
      const mapped = (error: unknown): never => {
        throw toConnectError(error, loggerOf());
      };
      const ended = (result: IteratorResult<T>): IteratorResult<T> => {
        if (
          result.done === true &&
          signal.aborted &&
          signal.reason instanceof ConnectError &&
          signal.reason.code === Code.DeadlineExceeded
        ) {
          throw toConnectError(signal.reason, loggerOf());
        }
        return result;
      };
      return {
        next: () => inner.next().then(ended, mapped),
        return: (value?: unknown) =>
          inner.return ? inner.return(value).catch(mapped) : Promise.resolve({ done: true, value: value as T }),
        throw: (error?: unknown) =>
          inner.throw ? inner.throw(error).then(ended, mapped) : Promise.reject(toConnectError(error, loggerOf())),
      };
    },
  };
}
