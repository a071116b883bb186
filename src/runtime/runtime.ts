import { create } from "@bufbuild/protobuf";
import { cloneMessage } from "./message-clone.js";
import { randomBytes } from "node:crypto";
import { type WorkerRef, WorkerRefSchema } from "../../gen/worker_runtime/v1/common_pb.js";
import type { RuntimeEvent } from "../../gen/worker_runtime/v1/events_pb.js";
import { DiagnosticSeverity } from "../../gen/worker_runtime/v1/runtime_pb.js";
import {
  ApprovalDecisionSchema,
  type SendInputRequest,
  type StreamInputRequest,
} from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import { WorkerSchema } from "../../gen/worker_runtime/v1/worker_pb.js";
import { BackgroundWrites } from "./background-write.js";
import { Catalog } from "./catalog.js";
import { ConfigBundles } from "./config-bundles.js";
import { reconnectWorkers } from "./unserved-bundles.js";
import { runtimeCursorStream, workerCursorStream } from "./cursor.js";
import { DiagnosticLog } from "./diagnostics.js";
import { ExecutionOffer } from "./execution-offer.js";
import { newId } from "./ids.js";
import { type Limits, resolveLimits } from "./limits.js";
import { HostLocations } from "./host-locations.js";
import { UnansweredLookups } from "./unanswered-lookups.js";
import { bounded } from "./error-log-fields.js";
import { silentLogger } from "./logger.js";
import { TERMINAL_RUN_STATUSES } from "./in-flight.js";
import { deliveryCounter, noopMetrics, type WatchStreamKind } from "./metrics.js";
import { listAllocations, listDiagnostics } from "./management-queries.js";
import { createMemoryStore } from "./memory-store.js";
import { PageTokens } from "./page-token.js";
import { PendingWrites } from "./pending-writes.js";
import { getRun, listRuns, readTranscript } from "./run-queries.js";
import type { InputOptions, Runtime, RuntimeOptions } from "./runtime-api.js";
import { requestReader } from "./runtime-requests.js";
import { RuntimeHealth } from "./runtime-health.js";
import { RuntimeEventFeed } from "./runtime-event-feed.js";
import { checkNotEnded } from "./run-queue.js";
import { closeRuntime, drainRuntime, type ShutdownParts } from "./runtime-shutdown.js";
import { runtimeSummary } from "./runtime-summary.js";
import { responseBudgetBytes } from "./message-budget.js";
import { logStoreDiagnostic, typedStoreErrors } from "./store-errors.js";
import { checkEnum, checkId, checkInput, checkRequestId, checkTextBytes, checkToolCallId } from "./validation.js";
import { runInputStream, runWatch } from "./watch.js";
import { RUNTIME_VERSION } from "./runtime-version.js";
import { openWorkerWatch, runtimeWatchPlan } from "./watch-plans.js";
import { watchSlot } from "./watch-slot.js";
import { openOnFirstNext } from "./lazy-watch.js";
import type { WorkerSession } from "./worker-session.js";

export type { InputOptions, Runtime, RuntimeOptions, RuntimeStats } from "./runtime-api.js";

/**
 * Creates an embedded Runtime: the whole product core in-process, with no
 * network server, file store or model client unless the caller plugs them
 * in. The server serves exactly this object. The facade only validates and
 * delegates: to the catalog, the sessions, the queries and the watches.
 */
export async function createRuntime(options: RuntimeOptions = {}): Promise<Runtime> {
  const limits: Limits = resolveLimits({
    ...options.limits,
    ...(options.heartbeatIntervalMs !== undefined ? { heartbeatIntervalMs: options.heartbeatIntervalMs } : {}),
    ...(options.storeProbeIntervalMs !== undefined ? { storeProbeIntervalMs: options.storeProbeIntervalMs } : {}),
  });
  const host = { lookups: new UnansweredLookups(), timeoutMs: limits.hostPathTimeoutMs };
  await options.executionBackend?.ready?.(host);
  const locations = await HostLocations.create(options.workspaceRoots ?? {}, options.executionBackend, host);
  const writes = new PendingWrites();
  // The store keeps the event retention `limits` say (given at open) unless it was created with its own.
  const store = writes.track(options.store ?? createMemoryStore());
  const opened = await store.open({
    ...(options.runtimeId !== undefined ? { runtimeId: checkId("runtime_id", options.runtimeId) } : {}),
    generateRuntimeId: () => newId("rt"),
    eventRetention: { events: limits.eventRetention, bytes: limits.eventRetentionBytes },
  });
  const { runtimeId } = opened;
  const storeId = opened.storeId ?? "";
  // Sealed with the store's identity, page tokens survive restarts; without one they last as long as the process.
  const pageTokens = new PageTokens(`${runtimeId}\0${storeId || randomBytes(32).toString("hex")}`);
  const logger = options.logger ?? silentLogger;
  const metrics = options.metrics ?? noopMetrics;
  const startedAt = new Date();
  const reconnect = (bundleId: string): Promise<void> => reconnectWorkers(catalog.sessions(), bundleId, offer);
  const bundles = new ConfigBundles(store, limits, pageTokens, opened, reconnect);
  const offer = new ExecutionOffer(options.executionBackend, locations, limits, bundles, options.secrets ?? new Map());
  const diagnostics = new DiagnosticLog(limits.maxDiagnostics, () => new Date());
  options.executionBackend?.attach?.({ diagnostics, logger, metrics });
  const addDiagnostic = (severity: DiagnosticSeverity, code: string, message: string, workerId?: string): void => {
    const worker = workerId !== undefined ? { worker: create(WorkerRefSchema, { runtimeId, workerId }) } : {};
    diagnostics.add({ severity, code, message, ...worker });
  };
  const health = new RuntimeHealth({ store, logger, probeIntervalMs: limits.storeProbeIntervalMs, addDiagnostic });
  const background = new BackgroundWrites((error) => health.requestSettled(error));
  const feed = new RuntimeEventFeed({
    ...{ runtimeId, store, limits, metrics, health, background, logger, lastSeq: opened.lastRuntimeEventSeq },
    stream: runtimeCursorStream(runtimeId, storeId),
    workerOf: (workerId) => [...catalog.sessions()].find((session) => session.workerId === workerId)?.worker,
  });
  const runtimeEvents = feed.events;
  const publish = (kind: RuntimeEvent["kind"]): void => feed.publish(kind);
  const catalog = new Catalog({
    runtimeId,
    limits,
    store,
    offer,
    health,
    addDiagnostic,
    publish,
    pageTokens,
    sessionDeps: {
      store,
      backend: offer.backend,
      limits,
      logger,
      metrics,
      now: () => new Date(),
      newRunId: () => newId("r"),
      profileOf: (worker) => offer.profileOf(worker),
      checkProfile: (worker) => offer.checkProfile(worker),
      workspaceDirOf: (worker) => offer.workspaceDirOf(worker),
      policyOf: (worker) => offer.policyOf(worker),
      onStoreResult: (source, error) => health.storeResult(source, error),
      publishWorker: (worker) => publish({ case: "workerUpdated", value: worker }),
      publishRun: (run) => {
        if (TERMINAL_RUN_STATUSES.has(run.status)) metrics.runEnded(run);
        publish({ case: "runChanged", value: run });
      },
      checkAcceptingWork: () => health.checkAcceptingWork(),
      background,
      cursorStreamOf: (workerId) => workerCursorStream(runtimeId, storeId, workerId),
    },
  });
  for (const diagnostic of [...opened.diagnostics, ...bundles.restoreDiagnostics]) {
    logStoreDiagnostic(logger, diagnostic);
    addDiagnostic(diagnostic.severity, diagnostic.code, diagnostic.message, diagnostic.workerId);
  }
  const cannotRun = offer.notConnectedReason();
  if (cannotRun !== undefined) addDiagnostic(DiagnosticSeverity.WARNING, "execution.unavailable", cannotRun);
  await catalog.restore(opened.workers);

  const run = (request: { worker?: WorkerRef; runId: string }): WorkerSession => {
    const session = catalog.session("worker", request.worker);
    checkId("run_id", request.runId);
    return session;
  };
  const live = {
    heartbeatMs: limits.heartbeatIntervalMs,
    maxEventsPerMessage: limits.maxEventsPerMessage,
    maxBatchBytes: responseBudgetBytes(limits),
  };
  const counter = (stream: WatchStreamKind) => deliveryCounter(metrics, stream);
  const delivered = { worker: counter("worker"), runtime: counter("runtime"), input: counter("input") };

  /** RuntimeManagement requests carry an optional runtime_id (a Backend routes by it): empty means this runtime, any other is refused. */
  const own = <R extends { runtimeId: string }>(request: R): R => {
    if (request.runtimeId) catalog.checkRuntimeId("runtime_id", request.runtimeId);
    return request;
  };
  /** What a method was passed, as its request message (a plain object is checked first: request-message.ts). */
  const asRequest = requestReader(limits.maxMessageBytes);
  /** SendInput, and StreamInput's input: the worker's session, then the input, checked before anything is taken. */
  const accept = async (request: SendInputRequest | StreamInputRequest, inputOptions?: InputOptions) => {
    const session = catalog.session("worker", request.worker);
    const input = checkInput(request, limits.maxInputBytes);
    // It lets the worker run, which a worker restored without its leases may not (worker-leases.ts).
    await catalog.checkRunnable(session);
    return typedStoreErrors(session.send(input, request.busyPolicy, request.requestId, inputOptions));
  };

  const boundMs = limits.cancelGraceMs + limits.flushTimeoutMs;
  const shutdown: ShutdownParts = { health, background, sessions: () => catalog.sessions(), runtimeEvents, store, writes, logger, boundMs };
  const runtime: Runtime = {
    runtimeId,
    limits,
    get status() {
      return health.status;
    },
    get closed() {
      return health.closed;
    },
    getRuntime: (request) => {
      if (request !== undefined) own(asRequest("getRuntime", request));
      return runtimeSummary({
        runtimeId,
        displayName: options.displayName ?? "worker-runtime",
        version: options.version ?? RUNTIME_VERSION,
        startedAt,
        storeKind: store.kind,
        status: health.status,
        limits,
        offer,
        workers: [...catalog.sessions()].map((session) => session.worker),
        diagnosticCount: diagnostics.size,
      });
    },
    listDiagnostics: (request) => listDiagnostics(diagnostics, own(asRequest("listDiagnostics", request)), limits, pageTokens),
    listAllocations: (request) => listAllocations(catalog.allocations, own(asRequest("listAllocations", request)), limits, pageTokens),
    putConfigBundle: (request) => background.request(async () => bundles.put(own(asRequest("putConfigBundle", request)))),
    getConfigBundle: (request) => bundles.get(own(asRequest("getConfigBundle", request))),
    listConfigBundles: (request) => bundles.list(own(asRequest("listConfigBundles", request))),
    createWorker: (request) => background.request(async () => catalog.create(asRequest("createWorker", request))),
    getWorker: (request) => cloneMessage(WorkerSchema, catalog.session("worker", asRequest("getWorker", request).worker).worker),
    listWorkers: (request) => catalog.list(asRequest("listWorkers", request)),
    stopWorker: (request) =>
      background.request(async () => {
        const session = catalog.session("worker", asRequest("stopWorker", request).worker);
        await catalog.stop(session);
        return cloneMessage(WorkerSchema, session.worker);
      }),
    deleteWorker: (init) =>
      background.request(async () => {
        const request = asRequest("deleteWorker", init);
        return catalog.delete(catalog.session("worker", request.worker), request.force);
      }),
    sendInput: (request, inputOptions) => background.request(async () => accept(asRequest("sendInput", request), inputOptions)),
    async *streamInput(init, watchOptions) {
      // The subscription is taken before the input is sent, so nothing is missed; but after the input
      // is checked, so a bad one is INVALID_ARGUMENT even when the slots are full, and never holds one.
      const request = asRequest("streamInput", init);
      const session = catalog.session("worker", request.worker);
      checkInput(request, limits.maxInputBytes);
      const subscription = watchSlot(session, limits.maxWatchersPerWorker, { for: "input", permanent: checkNotEnded });
      yield* runInputStream(
        {
          subscription,
          send: () => background.request(() => accept(request, watchOptions)),
          deleting: () => session.events.endingWith,
          ...live,
          delivered: delivered.input,
        },
        watchOptions,
      );
    },
    cancelRun: (init) =>
      background.request(async () => {
        const request = asRequest("cancelRun", init);
        return typedStoreErrors(run(request).cancel(request.runId));
      }),
    resolveApproval: (init, inputOptions) =>
      background.request(async () => {
        const request = asRequest("resolveApproval", init);
        const session = run(request);
        checkToolCallId("tool_call_id", request.toolCallId, limits.maxToolCallIdLength);
        checkEnum("decision", request.decision, ApprovalDecisionSchema, { required: true });
        checkTextBytes("reason", request.reason, limits.maxApprovalReasonBytes);
        checkRequestId("request_id", request.requestId);
        await catalog.checkRunnable(session);
        return typedStoreErrors(session.resolveApproval(request, inputOptions));
      }),
    getRun: async (init) => {
      const request = asRequest("getRun", init);
      return getRun(run(request), request.runId);
    },
    listRuns: async (init) => {
      const request = asRequest("listRuns", init);
      return listRuns(store, catalog.session("worker", request.worker), request, limits, pageTokens);
    },
    readTranscript: async (init) => {
      const request = asRequest("readTranscript", init);
      return readTranscript(store, catalog.session("worker", request.worker), request, limits);
    },
    watchWorker: (init, watchOptions) =>
      openOnFirstNext(health, () => {
        const request = asRequest("watchWorker", init);
        const session = catalog.session("worker", request.worker);
        const subscribe = () => watchSlot(session, limits.maxWatchersPerWorker);
        return openWorkerWatch(session, request.afterCursor, store, subscribe, { ...live, delivered: delivered.worker }, watchOptions);
      }),
    watchRuntime: (init, watchOptions) =>
      openOnFirstNext(health, () => {
        const request = asRequest("watchRuntime", init);
        catalog.checkRuntimeId("runtime_id", request.runtimeId);
        const snapshot = (cursor: string) => ({ runtime: runtime.getRuntime(), cursor });
        const plan = runtimeWatchPlan(runtimeEvents, request.afterCursor, store, snapshot, limits);
        return runWatch({ ...plan, delivered: delivered.runtime }, watchOptions);
      }),
    onStatusChange: (listener) => health.onStatusChange(listener),
    stats: () => {
      let subscriptions = runtimeEvents.subscriberCount;
      for (const session of catalog.sessions()) subscriptions += session.events.subscriberCount;
      const storeWritesFailing = health.storeDegraded;
      return { subscriptions, runtimeSubscriptions: runtimeEvents.subscriberCount, workers: catalog.size, storeWritesFailing };
    },
    drain: (graceMs, cut) => drainRuntime(shutdown, graceMs, cut),
    close: () => closeRuntime(shutdown),
    reportCorruption: (workerId, message, hostDetail) => {
      logger.error("store corruption found", { worker_id: workerId, damage: bounded(hostDetail ?? message) });
      if (workerId !== undefined) return catalog.quarantine(workerId, message);
      health.runtimeLogDamaged(message);
      addDiagnostic(DiagnosticSeverity.ERROR, "store.runtime_log_damaged", message);
    },
  };
  return runtime;
}
