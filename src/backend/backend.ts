import { createRouterTransport, type ConnectRouter, type Interceptor } from "@connectrpc/connect";
import { file_grpc_health_v1_health, Health } from "../../gen/grpc/health/v1/health_pb.js";
import { file_grpc_reflection_v1_reflection, ServerReflection } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import {
  file_grpc_reflection_v1alpha_reflection,
  ServerReflection as ServerReflectionV1alpha,
} from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { file_worker_runtime_v1_errors } from "../../gen/worker_runtime/v1/errors_pb.js";
import { file_worker_runtime_v1_runtime_management, RuntimeManagement } from "../../gen/worker_runtime/v1/runtime_management_pb.js";
import { file_worker_runtime_v1_runtime_registry, RuntimeRegistry } from "../../gen/worker_runtime/v1/runtime_registry_pb.js";
import { file_worker_runtime_v1_worker_catalog, WorkerCatalog } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { file_worker_runtime_v1_worker_interaction, WorkerInteraction } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import { file_worker_runtime_v1_worker_observation, WorkerObservation } from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import type { Logger, Runtime } from "../runtime/index.js";
import {
  createErrorInterceptor,
  createHealthService,
  createLogFieldsInterceptor,
  createReflectionServices,
  createRoutes,
  reflectionRegistry,
  UNTRACED_SERVICES,
} from "../server/index.js";
import { createClientTracingInterceptor, createServerTracingInterceptor, detached } from "../telemetry/tracing/index.js";
import type { ConnectionBackoffOptions } from "./backoff.js";
import type { BundleCatalog } from "./bundle-catalog.js";
import { BundleDir } from "./bundle-dir.js";
import { BundlePush } from "./bundle-push.js";
import { createRegistryService } from "./registry-service.js";
import { createRemoteTransport, endpointOf, forwardRequestId, type RemoteEndpoint, routeKeyOf } from "./remote-transport.js";
import { createRoutedCatalog, createRoutedInteraction, createRoutedManagement, createRoutedObservation } from "./routed-services.js";
import { RuntimeConnection, type RuntimeRoute } from "./runtime-connection.js";
import { RuntimeDirectory } from "./runtime-directory.js";
import { SharedRuntimeWatch, type SharedRuntimeWatchOptions } from "./shared-runtime-watch.js";
import type { SharedWorkerWatch, SharedWorkerWatchOptions } from "./shared-worker-watch.js";
import { SharedWorkerWatches } from "./shared-worker-watches.js";
import { WatchSlots } from "./watch-slots.js";

/** A remote Runtime from the Backend's configuration. */
export interface RemoteRuntimeSpec extends RemoteEndpoint {
  /** The id the Runtime reports; the routing key. */
  runtimeId: string;
}

/** Options for {@link createBackend}. */
export interface BackendOptions {
  /** The Runtime embedded in the Backend's process. */
  runtime: Runtime;
  /** Remote Runtimes to connect to at start. */
  remotes?: readonly RemoteRuntimeSpec[];
  logger: Logger;
  /** Deadline of a routed unary call (default and cap; default 30 s). */
  callTimeoutMs?: number;
  /** Deadline of each Runtime's call in a ListWorkers fan-out (default 2 s). */
  fanoutTimeoutMs?: number;
  /** Deadline of the GetRuntime call that opens a connection attempt (default 5 s). */
  connectTimeoutMs?: number;
  /** Heartbeat period of a relayed watch while its Runtime is away (default 5 s). */
  heartbeatMs?: number;
  /** Reconnect backoff (default: gRPC's, 1 s ×1.6 ±20 % up to 120 s). */
  backoff?: ConnectionBackoffOptions;
  /** Bounds of each Runtime's shared WatchRuntime ring (default 4096 events, 8 MiB). */
  runtimeWatchRing?: Pick<SharedRuntimeWatchOptions, "maxEvents" | "maxBytes">;
  /**
   * Bounds of each watched worker's shared WatchWorker: its ring (default
   * 4096 events, 4 MiB) and the in-flight text its view holds (default 4 MiB).
   */
  workerWatchBounds?: Pick<SharedWorkerWatchOptions, "maxEvents" | "maxBytes" | "maxInFlightBytes">;
  /** How long a worker's shared upstream WatchWorker stays open after its last client left (default 5 s). */
  workerWatchLingerMs?: number;
  /**
   * The Backend's config bundles: fixed, or a BundleDir that re-reads
   * --bundles-dir (see bundle-catalog.ts and bundle-dir.ts).
   * CreateWorker selecting one of them, or one stored in the embedded
   * Runtime, first pushes it to the target Runtime if that lacks it.
   */
  bundles?: BundleCatalog | BundleDir;
  /**
   * Extra client interceptors on the transport to each Runtime, outermost
   * first (e.g. per-Runtime call metrics); none by default.
   */
  runtimeInterceptors?: (runtimeId: string) => Interceptor[];
  /**
   * Most runtimes registered at once, the embedded one included, past which
   * AddRuntime is RESOURCE_EXHAUSTED (default 1,000): each holds a
   * connection, a shared watch and its metrics' label values.
   */
  maxRuntimes?: number;
  /**
   * Most WatchWorker streams of one worker through the Backend (default
   * 1,024: browser tabs of one worker share one upstream watch, so this is
   * the Backend's memory, not the Runtime's watcher limit). One more is
   * RESOURCE_EXHAUSTED / LIMIT_EXCEEDED.
   */
  maxWatchersPerWorker?: number;
  /**
   * Most watch streams (WatchWorker and WatchRuntime) through the Backend
   * in total (default 4,096; each costs some 60 KB). One more is
   * RESOURCE_EXHAUSTED / LIMIT_EXCEEDED.
   */
  maxWatchers?: number;
}

/** A Backend: the routed services over a registry of Runtimes. */
export interface Backend {
  /** The Runtimes it routes to. */
  readonly directory: RuntimeDirectory;
  /** The services to serve (pass to startRuntimeServer's `routes`). */
  readonly routes: (router: ConnectRouter) => void;
  /** Registers a remote Runtime and starts connecting to it. */
  addRemote(spec: RemoteRuntimeSpec): RuntimeConnection;
  /**
   * Re-points the registered remote Runtime `spec.runtimeId` at the spec's
   * address and credentials (RuntimeConnection.repoint); undefined when no
   * remote Runtime has that id.
   */
  repointRemote(spec: RemoteRuntimeSpec): RuntimeConnection | undefined;
  /**
   * Closes every connection, ending the watches relayed through them (the
   * embedded Runtime is closed by its server; its close calls this too).
   */
  close(): void;
  /** The shared upstream WatchRuntime of a registered Runtime. */
  runtimeWatch(runtimeId: string): SharedRuntimeWatch | undefined;
  /** The shared upstream WatchWorker of a worker, while it has clients or lingers. */
  workerWatch(runtimeId: string, workerId: string): SharedWorkerWatch | undefined;
}

/** Every file the Backend exposes through reflection. */
const BACKEND_FILES = [
  file_worker_runtime_v1_runtime_management,
  file_worker_runtime_v1_worker_catalog,
  file_worker_runtime_v1_worker_interaction,
  file_worker_runtime_v1_worker_observation,
  file_worker_runtime_v1_runtime_registry,
  file_worker_runtime_v1_errors,
  file_grpc_health_v1_health,
  file_grpc_reflection_v1_reflection,
  file_grpc_reflection_v1alpha_reflection,
];

/** The services a Backend registers, by full name. */
export const BACKEND_SERVICES: readonly string[] = [
  RuntimeManagement.typeName,
  WorkerCatalog.typeName,
  WorkerInteraction.typeName,
  WorkerObservation.typeName,
  RuntimeRegistry.typeName,
  Health.typeName,
  ServerReflection.typeName,
  ServerReflectionV1alpha.typeName,
];

/** BackendOptions.maxRuntimes when unset. */
const DEFAULT_MAX_RUNTIMES = 1_000;

/**
 * Builds a Backend around an embedded Runtime. The embedded Runtime is
 * reached through an in-process router transport over the runtime server's
 * own routes (with its error mapping), so it is called through the same
 * generated clients, errors and health loop as a remote Runtime.
 */
export function createBackend(options: BackendOptions): Backend {
  const { runtime, logger } = options;
  const directory = new RuntimeDirectory();
  const connectTimeoutMs = options.connectTimeoutMs ?? 5_000;
  const heartbeatMs = options.heartbeatMs ?? 5_000;
  const shared = new WeakMap<RuntimeConnection, SharedRuntimeWatch>();
  /** Registers a connection with its shared WatchRuntime, which stops when the connection closes. */
  const registerNow = (connection: RuntimeConnection): void => {
    directory.add(connection);
    const watch = new SharedRuntimeWatch(connection, {
      ...options.runtimeWatchRing,
      heartbeatMs,
      ...(options.backoff ? { backoff: options.backoff } : {}),
      logger,
    });
    shared.set(connection, watch);
    connection.onChange(() => {
      if (connection.isClosed) watch.stop();
    });
    watch.start();
  };
  /** Both loops run outside the trace of the call that registered them (an AddRuntime): they outlive it. */
  const register = (connection: RuntimeConnection): void => detached(() => registerNow(connection));
  const interceptorsOf = (runtimeId: string): Interceptor[] => options.runtimeInterceptors?.(runtimeId) ?? [];
  // Traced like a remote Runtime: a client span in the Backend, a server span in the Runtime.
  const embeddedTransport = createRouterTransport(createRoutes(runtime), {
    transport: {
      interceptors: [createClientTracingInterceptor({ rpcSystem: "connectrpc" }), ...interceptorsOf(runtime.runtimeId), forwardRequestId],
    },
    router: {
      // The embedded Runtime's runs log with the Backend caller's request id, forwarded in the header.
      interceptors: [
        createServerTracingInterceptor({ untracedServices: UNTRACED_SERVICES }),
        createLogFieldsInterceptor(),
        createErrorInterceptor(logger),
      ],
    },
  });
  register(
    new RuntimeConnection({
      runtimeId: runtime.runtimeId,
      embedded: true,
      endpoint: "",
      transport: embeddedTransport,
      hasCredentials: false,
      connectTimeoutMs,
      ...(options.backoff ? { backoff: options.backoff } : {}),
      logger,
    }),
  );
  const remoteRoute = (spec: RemoteRuntimeSpec, key = routeKeyOf(spec)): RuntimeRoute => {
    const remote = createRemoteTransport(spec, interceptorsOf(spec.runtimeId));
    return {
      endpoint: endpointOf(spec.url),
      transport: remote.transport,
      hasCredentials: spec.token !== undefined,
      beforeAttempt: remote.refreshToken,
      closeTransport: remote.close,
      key,
    };
  };
  const addRemote = (spec: RemoteRuntimeSpec): RuntimeConnection => {
    const connection = new RuntimeConnection({
      runtimeId: spec.runtimeId,
      embedded: false,
      ...remoteRoute(spec),
      connectTimeoutMs,
      ...(options.backoff ? { backoff: options.backoff } : {}),
      logger,
    });
    register(connection);
    return connection;
  };
  const repointRemote = (spec: RemoteRuntimeSpec): RuntimeConnection | undefined => {
    const connection = directory.get(spec.runtimeId);
    if (!connection || connection.embedded) return undefined;
    // Nothing changed (a retried UpdateRuntime): the connection, and the calls and watches on it, stay.
    const key = routeKeyOf(spec);
    if (connection.routeKey === key) return connection;
    connection.repoint(remoteRoute(spec, key));
    logger.info("runtime re-pointed", { runtime_id: spec.runtimeId, endpoint: connection.endpoint });
    return connection;
  };
  for (const spec of options.remotes ?? []) addRemote(spec);

  const callTimeoutMs = options.callTimeoutMs ?? 30_000;
  const workerWatches = new SharedWorkerWatches(directory, {
    ...options.workerWatchBounds,
    lingerMs: options.workerWatchLingerMs ?? 5_000,
    heartbeatMs,
    logger,
  });
  const routing = {
    directory,
    embeddedRuntimeId: runtime.runtimeId,
    callTimeoutMs,
    fanoutTimeoutMs: options.fanoutTimeoutMs ?? 2_000,
    heartbeatMs,
    sharedRuntimeWatch: (connection: RuntimeConnection) => shared.get(connection),
    sharedWorkerWatches: workerWatches,
    watchSlots: new WatchSlots({ perWorker: options.maxWatchersPerWorker ?? 1_024, total: options.maxWatchers ?? 4_096 }),
    bundlePush: new BundlePush(bundleDirOf(options.bundles), () => directory.get(runtime.runtimeId), callTimeoutMs),
    logger,
  };
  const reflection = createReflectionServices(reflectionRegistry(BACKEND_FILES), BACKEND_SERVICES);
  const routes = (router: ConnectRouter): void => {
    router.service(RuntimeManagement, createRoutedManagement(routing));
    router.service(WorkerCatalog, createRoutedCatalog(routing));
    router.service(WorkerInteraction, createRoutedInteraction(routing));
    router.service(WorkerObservation, createRoutedObservation(routing));
    router.service(
      RuntimeRegistry,
      createRegistryService({
        directory,
        addRemote: (runtimeId, endpoint) => addRemote({ runtimeId, ...endpoint }),
        repointRemote: (runtimeId, endpoint) => repointRemote({ runtimeId, ...endpoint }),
        fanoutTimeoutMs: routing.fanoutTimeoutMs,
        maxRuntimes: options.maxRuntimes ?? DEFAULT_MAX_RUNTIMES,
      }),
    );
    router.service(Health, createHealthService(runtime, BACKEND_SERVICES));
    router.service(ServerReflection, reflection.v1);
    router.service(ServerReflectionV1alpha, reflection.v1alpha);
  };
  const runtimeWatch = (runtimeId: string): SharedRuntimeWatch | undefined => {
    const connection = directory.get(runtimeId);
    return connection ? shared.get(connection) : undefined;
  };
  const workerWatch = (runtimeId: string, workerId: string): SharedWorkerWatch | undefined => {
    const connection = directory.get(runtimeId);
    return connection ? workerWatches.get(connection, workerId) : undefined;
  };
  const close = (): void => directory.closeAll();
  // The Backend ends with its embedded Runtime (closed by the server after the drain): the watches it
  // relays from remote Runtimes are streams of that server, which nothing else ends, so left open they
  // held its close until the forced close cut every session.
  const stopFollowing = runtime.onStatusChange(() => {
    if (!runtime.closed) return;
    stopFollowing();
    close();
  });
  return { directory, routes, addRemote, repointRemote, close, runtimeWatch, workerWatch };
}

/** BackendOptions.bundles as a BundleDir (a fixed catalog never re-reads). */
function bundleDirOf(bundles: BundleCatalog | BundleDir | undefined): BundleDir {
  return bundles instanceof BundleDir ? bundles : new BundleDir({ initial: bundles ?? new Map() });
}
