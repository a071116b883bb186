import { create, fromBinary, type MessageShape, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError, type ContextValues, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import { RuntimeHealth } from "../../gen/worker_runtime/v1/backend_pb.js";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import type { RuntimeManagement } from "../../gen/worker_runtime/v1/runtime_management_pb.js";
import type { WorkerCatalog } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import type { WorkerInteraction } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import {
  WatchRuntimeResponseSchema,
  WatchWorkerResponseSchema,
  type WatchRuntimeRequest,
  type WatchRuntimeResponse,
  type WatchWorkerRequest,
  type WatchWorkerResponse,
  type WorkerObservation,
} from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { childLogger, type Logger } from "../runtime/index.js";
import { isBinaryRequest, logFieldsOf } from "../server/index.js";
import { invalidField } from "./backend-errors.js";
import { type BundlePush, isBundleMissing } from "./bundle-push.js";
import { listAcrossRuntimes } from "./fanout-list.js";
import { checkBundleLists, checkCreateWorkerLists, checkListFilters, checkRoutedRuntimeId } from "./request-checks.js";
import type { RuntimeClients } from "./runtime-clients.js";
import type { RuntimeConnection } from "./runtime-connection.js";
import type { RuntimeDirectory } from "./runtime-directory.js";
import { backendShuttingDown, fromUpstream, typed, unknownRuntime } from "./upstream-errors.js";
import { rawRuntimeWatch, rawWorkerWatch } from "./raw-watch.js";
import type { SharedRuntimeWatch } from "./shared-runtime-watch.js";
import type { SharedWorkerWatches } from "./shared-worker-watches.js";
import type { WatchSlots } from "./watch-slots.js";
import { relayWatch, type ResumableWatch } from "./watch-relay.js";
import { decodedWorkerShown } from "./worker-watch-catch-up.js";

/** What the routed services need from the Backend. */
export interface RoutingContext {
  directory: RuntimeDirectory;
  /** Where RuntimeManagement calls without a runtime_id go. */
  embeddedRuntimeId: string;
  /** Deadline of a routed call when the client sets none (and the most it may set). */
  callTimeoutMs: number;
  /** Deadline of each Runtime's call in a fan-out. */
  fanoutTimeoutMs: number;
  /** Heartbeat period of a relayed watch while its Runtime is away. */
  heartbeatMs: number;
  /** The shared upstream WatchRuntime of a connection, if it has one. */
  sharedRuntimeWatch?: (connection: RuntimeConnection) => SharedRuntimeWatch | undefined;
  /** The shared upstream WatchWorker streams, one per watched worker. */
  sharedWorkerWatches?: SharedWorkerWatches;
  /** The bounds of the watches relayed (none: unbounded, for tests that mount the routes alone). */
  watchSlots?: WatchSlots;
  /** Pushes the Backend's bundles to a Runtime before CreateWorker selects one. */
  bundlePush?: BundlePush;
  logger: Logger;
}

/**
 * Routes one unary call to the Runtime named by `runtimeId`: unknown →
 * NOT_FOUND, not READY → RUNTIME_UNAVAILABLE at once (a Runtime that is
 * away never holds a caller for its deadline, and the call wakes its
 * reconnect: RuntimeConnection.demandAttempt; a draining one is still
 * called, see RuntimeConnection.routable), any upstream error through
 * the one mapping in upstream-errors.ts.
 */
function router(context: RoutingContext) {
  const connectionFor = (runtimeId: string): RuntimeConnection => {
    const connection = context.directory.get(runtimeId);
    if (!connection) throw unknownRuntime(runtimeId, context.directory.ids());
    const health = connection.health;
    if (!connection.routable) {
      connection.demandAttempt();
      const reason =
        health === RuntimeHealth.UNAUTHENTICATED
          ? ErrorReason.RUNTIME_UNAUTHENTICATED
          : health === RuntimeHealth.INCOMPATIBLE
            ? ErrorReason.RUNTIME_INCOMPATIBLE
            : ErrorReason.RUNTIME_UNAVAILABLE;
      throw typed(Code.Unavailable, reason, `runtime ${runtimeId} is ${RuntimeHealth[health].toLowerCase()}`, runtimeId);
    }
    return connection;
  };
  const call = async <T>(
    runtimeId: string,
    ctx: HandlerContext,
    fn: (clients: RuntimeClients, options: { signal: AbortSignal; timeoutMs: number; contextValues: ContextValues }) => Promise<T>,
  ): Promise<T> => {
    const connection = connectionFor(runtimeId);
    const clientTimeoutMs = ctx.timeoutMs();
    const ours = clientTimeoutMs === undefined || clientTimeoutMs >= context.callTimeoutMs;
    const timeoutMs = ours ? context.callTimeoutMs : clientTimeoutMs;
    // The route the call goes out on: what it ends with after a re-point is not the new route's.
    const generation = connection.routeGeneration;
    try {
      // The served call's context values go with it: the transport forwards its request id.
      return await fn(connection.clients, { signal: ctx.signal, timeoutMs, contextValues: ctx.values });
    } catch (error) {
      const upstream = ConnectError.from(error);
      // A client's own short deadline says nothing about the runtime's health.
      if (ours || upstream.code !== Code.DeadlineExceeded) connection.reportFailure(upstream, generation);
      throw relayedFailure(connection, upstream, callLogger(context, ctx), ctx.signal);
    }
  };
  return { call, connectionFor };
}

/** What a routed call's client is told of its upstream failure: the Backend's own shutdown, or the runtime's error mapped. */
function relayedFailure(connection: RuntimeConnection, upstream: ConnectError, logger: Logger, signal: AbortSignal): ConnectError {
  if (connection.closedForShutdown && !signal.aborted) return backendShuttingDown(connection.runtimeId);
  return fromUpstream(upstream, connection.runtimeId, logger, signal);
}

/** The Backend's logger with the served call's log fields (its request id), for lines about that call. */
function callLogger(context: RoutingContext, ctx: HandlerContext): Logger {
  const fields = logFieldsOf(ctx.values);
  return fields ? childLogger(context.logger, fields) : context.logger;
}

/** Whether the client reads binary protobuf (gRPC, gRPC-Web, Connect+proto); JSON clients need decoded messages. */
function isBinary(ctx: HandlerContext): boolean {
  return isBinaryRequest(ctx.requestHeader);
}

/** The runtime id of a WorkerRef, required and of the Runtime's id shape. */
function refRuntime(ref: WorkerRef | undefined): string {
  if (!ref) throw invalidField("worker", "is required");
  return checkRoutedRuntimeId("worker.runtime_id", ref.runtimeId);
}

/** A runtime_id field that must name a Runtime. */
function required(runtimeId: string): string {
  return checkRoutedRuntimeId("runtime_id", runtimeId);
}

/** RuntimeManagement through a Backend: by runtime_id, empty = the embedded Runtime. */
export function createRoutedManagement(context: RoutingContext): ServiceImpl<typeof RuntimeManagement> {
  const { call } = router(context);
  const target = (runtimeId: string): string => (runtimeId === "" ? context.embeddedRuntimeId : required(runtimeId));
  return {
    getRuntime: (request, ctx) => call(target(request.runtimeId), ctx, (c, o) => c.management.getRuntime(request, o)),
    listDiagnostics: (request, ctx) => call(target(request.runtimeId), ctx, (c, o) => c.management.listDiagnostics(request, o)),
    listAllocations: (request, ctx) => call(target(request.runtimeId), ctx, (c, o) => c.management.listAllocations(request, o)),
    putConfigBundle: (request, ctx) => {
      const runtimeId = target(request.runtimeId);
      checkBundleLists(request);
      return call(runtimeId, ctx, (c, o) => c.management.putConfigBundle(request, o));
    },
    getConfigBundle: (request, ctx) => call(target(request.runtimeId), ctx, (c, o) => c.management.getConfigBundle(request, o)),
    listConfigBundles: (request, ctx) => call(target(request.runtimeId), ctx, (c, o) => c.management.listConfigBundles(request, o)),
  };
}

/** WorkerCatalog through a Backend; ListWorkers without runtime_id fans out. */
export function createRoutedCatalog(context: RoutingContext): ServiceImpl<typeof WorkerCatalog> {
  const { call, connectionFor } = router(context);
  return {
    async createWorker(request, ctx) {
      const runtimeId = required(request.runtimeId);
      checkCreateWorkerLists(request);
      const create = () => call(runtimeId, ctx, (c, o) => c.catalog.createWorker(request, o));
      const source = request.profile?.source;
      const push = context.bundlePush;
      if (source?.case !== "bundle" || !push) return create();
      const connection = connectionFor(runtimeId);
      const routed = <T>(fn: Parameters<typeof call<T>>[2]) => call(runtimeId, ctx, fn);
      if (!(await push.ensure(connection, source.value, routed, ctx.signal, ctx.values))) return create();
      try {
        return await create();
      } catch (error) {
        // The cache said present but the Runtime lost it (e.g. a wiped store): push again, once. Only
        // then: another NOT_FOUND (a profile not in the bundle) would come back the same after a second try.
        if (!isBundleMissing(error, source.value)) throw error;
        push.forget(connection, source.value);
        await push.ensure(connection, source.value, routed, ctx.signal, ctx.values);
        return create();
      }
    },
    getWorker: (request, ctx) => call(refRuntime(request.worker), ctx, (c, o) => c.catalog.getWorker(request, o)),
    listWorkers: (request, ctx) => {
      if (request.runtimeId !== "") {
        const runtimeId = required(request.runtimeId);
        checkListFilters(request);
        return call(runtimeId, ctx, (c, o) => c.catalog.listWorkers(request, o));
      }
      return listAcrossRuntimes(context.directory, request, ctx.signal, {
        perRuntimeTimeoutMs: context.fanoutTimeoutMs,
        clientTimeoutMs: ctx.timeoutMs(),
        binary: isBinary(ctx),
        logger: callLogger(context, ctx),
        contextValues: ctx.values,
      });
    },
    stopWorker: (request, ctx) => call(refRuntime(request.worker), ctx, (c, o) => c.catalog.stopWorker(request, o)),
    deleteWorker: (request, ctx) => call(refRuntime(request.worker), ctx, (c, o) => c.catalog.deleteWorker(request, o)),
  };
}

/** WorkerInteraction through a Backend. StreamInput is relayed as is (input cannot be resumed). */
export function createRoutedInteraction(context: RoutingContext): ServiceImpl<typeof WorkerInteraction> {
  const { call, connectionFor } = router(context);
  return {
    sendInput: (request, ctx) => call(refRuntime(request.worker), ctx, (c, o) => c.interaction.sendInput(request, o)),
    async *streamInput(request, ctx) {
      const runtimeId = refRuntime(request.worker);
      const connection = connectionFor(runtimeId);
      const generation = connection.routeGeneration;
      try {
        yield* connection.clients.interaction.streamInput(request, { signal: ctx.signal, contextValues: ctx.values });
      } catch (error) {
        const upstream = ConnectError.from(error);
        // The client's own cancel or deadline (which ends the upstream call too) says nothing about the runtime's health.
        if (!ctx.signal.aborted) connection.reportFailure(upstream, generation);
        throw relayedFailure(connection, upstream, callLogger(context, ctx), ctx.signal);
      }
    },
    cancelRun: (request, ctx) => call(refRuntime(request.worker), ctx, (c, o) => c.interaction.cancelRun(request, o)),
    resolveApproval: (request, ctx) => call(refRuntime(request.worker), ctx, (c, o) => c.interaction.resolveApproval(request, o)),
    getRun: (request, ctx) => call(refRuntime(request.worker), ctx, (c, o) => c.interaction.getRun(request, o)),
    listRuns: (request, ctx) => call(refRuntime(request.worker), ctx, (c, o) => c.interaction.listRuns(request, o)),
  };
}

/**
 * WorkerObservation through a Backend; both watches resume by cursor across
 * upstream failures, and pass events through undecoded to binary clients.
 * Each is served from a shared upstream watch when it can be: WatchRuntime
 * from the Runtime's (shared-runtime-watch.ts), WatchWorker from the one
 * the Backend keeps per watched worker while it has clients
 * (shared-worker-watch.ts), so a Runtime's per-worker watcher limit is not
 * spent by browsers. A client the shared watch cannot serve (a cursor its
 * ring does not hold, a Runtime away) is relayed on its own stream.
 */
export function createRoutedObservation(context: RoutingContext): ServiceImpl<typeof WorkerObservation> {
  const { call, connectionFor } = router(context);
  const relayOptions = (ctx: HandlerContext) => ({ heartbeatMs: context.heartbeatMs, logger: callLogger(context, ctx) });
  const workerWatchOf = async function* (request: WatchWorkerRequest, ctx: HandlerContext, runtimeId: string) {
    const connection = context.directory.get(runtimeId);
    const worker = request.worker;
    const shared =
      connection?.routable && worker
        ? await context.sharedWorkerWatches?.serve(connection, worker, request.afterCursor, ctx.signal)
        : undefined;
    if (shared) {
      yield* isBinary(ctx) ? shared : decoded(WatchWorkerResponseSchema, shared);
      return;
    }
    yield* relayWatch(
      context.directory,
      runtimeId,
      request.afterCursor,
      isBinary(ctx) ? rawWorkerWatch(request, ctx.values) : workerWatch(request, ctx.values),
      ctx.signal,
      relayOptions(ctx),
    );
  };
  const runtimeWatchOf = async function* (request: WatchRuntimeRequest, ctx: HandlerContext, connection: RuntimeConnection) {
    const shared = await context.sharedRuntimeWatch?.(connection)?.serve(request.afterCursor, ctx.signal);
    if (shared) {
      yield* isBinary(ctx) ? shared : decoded(WatchRuntimeResponseSchema, shared);
      return;
    }
    yield* relayWatch(
      context.directory,
      connection.runtimeId,
      request.afterCursor,
      isBinary(ctx) ? rawRuntimeWatch(request, ctx.values) : runtimeWatch(request, ctx.values),
      ctx.signal,
      relayOptions(ctx),
    );
  };
  return {
    readTranscript: (request, ctx) => call(refRuntime(request.worker), ctx, (c, o) => c.observation.readTranscript(request, o)),
    // Each watch holds a place among the Backend's relayed watches while it runs (watch-slots.ts).
    async *watchWorker(request, ctx) {
      const runtimeId = refRuntime(request.worker);
      const slot = context.watchSlots?.worker(runtimeId, request.worker?.workerId ?? "", ctx.signal);
      try {
        yield* workerWatchOf(request, ctx, runtimeId);
      } finally {
        slot?.release();
      }
    },
    async *watchRuntime(request, ctx) {
      const connection = connectionFor(required(request.runtimeId));
      const slot = context.watchSlots?.runtime(ctx.signal);
      try {
        yield* runtimeWatchOf(request, ctx, connection);
      } finally {
        slot?.release();
      }
    },
  };
}

/** Decodes a shared watch's undecoded messages for a JSON client. */
async function* decoded<S extends typeof WatchRuntimeResponseSchema | typeof WatchWorkerResponseSchema>(
  schema: S,
  messages: AsyncIterable<MessageShape<S>>,
): AsyncGenerator<MessageShape<S>> {
  for await (const message of messages) yield fromBinary(schema, toBinary(schema, message));
}

function workerWatch(request: WatchWorkerRequest, contextValues: ContextValues): ResumableWatch<WatchWorkerResponse> {
  return {
    open: (c, cursor, signal) =>
      c.clients.observation.watchWorker({ worker: request.worker, afterCursor: cursor }, { signal, contextValues }),
    cursorOf: (m) => lastCursor(m.events, m.heartbeat?.cursor),
    hasEvents: (m) => m.events.length > 0,
    snapshotCursor: (m) => m.snapshot?.cursor || undefined,
    withoutSnapshot: (m) =>
      !m.snapshot
        ? m
        : m.events.length === 0 && !m.heartbeat
          ? undefined
          : create(WatchWorkerResponseSchema, { events: m.events, heartbeat: m.heartbeat }),
    heartbeat: (cursor) => create(WatchWorkerResponseSchema, { heartbeat: { cursor } }),
    shown: () => decodedWorkerShown(request.worker, contextValues),
  };
}

function runtimeWatch(request: WatchRuntimeRequest, contextValues: ContextValues): ResumableWatch<WatchRuntimeResponse> {
  return {
    open: (c, cursor, signal) =>
      c.clients.observation.watchRuntime({ runtimeId: request.runtimeId, afterCursor: cursor }, { signal, contextValues }),
    cursorOf: (m) => lastCursor(m.events, m.heartbeat?.cursor),
    hasEvents: (m) => m.events.length > 0,
    snapshotCursor: (m) => m.snapshot?.cursor || undefined,
    withoutSnapshot: (m) =>
      !m.snapshot
        ? m
        : m.events.length === 0 && !m.heartbeat
          ? undefined
          : create(WatchRuntimeResponseSchema, { events: m.events, heartbeat: m.heartbeat }),
    heartbeat: (cursor) => create(WatchRuntimeResponseSchema, { heartbeat: { cursor } }),
  };
}

/** The newest durable cursor in a message: the last durable event's, else the heartbeat's. */
function lastCursor(events: readonly { cursor: string }[], heartbeat: string | undefined): string | undefined {
  for (let i = events.length - 1; i >= 0; i--) {
    const cursor = events[i]?.cursor;
    if (cursor) return cursor;
  }
  return heartbeat || undefined;
}
