import { create, toBinary } from "@bufbuild/protobuf";
import { cloneMessage } from "./message-clone.js";
import { Code } from "@connectrpc/connect";
import { createHash } from "node:crypto";
import { BusyPolicy, type WorkerRef, WorkerRefSchema } from "../../gen/worker_runtime/v1/common_pb.js";
import { type ErrorDetail, ErrorDetailSchema, ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import type { RuntimeEvent } from "../../gen/worker_runtime/v1/events_pb.js";
import type { Run } from "../../gen/worker_runtime/v1/run_pb.js";
import { DiagnosticSeverity } from "../../gen/worker_runtime/v1/runtime_pb.js";
import {
  type CreateWorkerRequest,
  CreateWorkerRequestSchema,
  type CreateWorkerResponse,
  CreateWorkerResponseSchema,
  type ListWorkersRequest,
  type ListWorkersResponse,
  ListWorkersResponseSchema,
} from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { type Worker, WorkerSchema, WorkerStatus, WorkerStatusSchema } from "../../gen/worker_runtime/v1/worker_pb.js";
import { AllocationManager } from "./allocations.js";
import { idempotencyConflict, invalidArgument, notFound, RuntimeError } from "./errors.js";
import { checkMounts, checkMountsApart } from "./mounts.js";
import type { ExecutionOffer } from "./execution-offer.js";
import { newId } from "./ids.js";
import type { Limits } from "./limits.js";
import { ResponseBudget, responseBudgetBytes } from "./message-budget.js";
import type { PageTokens } from "./page-token.js";
import type { RestoredWorker, RuntimeStore } from "./store.js";
import { DAMAGED_WORKER_MESSAGE, storeError, typedStoreErrors } from "./store-errors.js";
import type { RuntimeHealth } from "./runtime-health.js";
import { checkEnumList, checkId, checkLabels, checkRequestId, checkTextBytes, checkWorkerRef, resolvePageSize } from "./validation.js";
import { checkIdentifyingText } from "./validation.js";
import { checkAcceptsInput } from "./run-queue.js";
import { checkCreateWorkerCounts } from "./request-bounds.js";
import { workerConnectivity } from "./worker-connectivity.js";
import { orderKey, WorkerDirectory } from "./worker-directory.js";
import type { SessionDeps } from "./session-deps.js";
import { WorkerSession } from "./worker-session.js";
import { WorkerDeletes } from "./worker-deletes.js";
import { locatedLeases, RestoredLeases } from "./worker-leases.js";

/** What the catalog needs from its runtime. */
export interface CatalogInit {
  runtimeId: string;
  limits: Limits;
  store: RuntimeStore;
  offer: ExecutionOffer;
  health: RuntimeHealth;
  sessionDeps: SessionDeps;
  /** Seals and opens ListWorkers page tokens. */
  pageTokens: PageTokens;
  addDiagnostic(severity: DiagnosticSeverity, code: string, message: string, workerId?: string): void;
  /** Publishes on the runtime-wide stream. */
  publish(kind: RuntimeEvent["kind"]): void;
}

/**
 * The runtime's Workers: creating them (idempotent by request_id), finding
 * them by reference, listing, stopping and deleting them, the workspace
 * leases they hold, and restoring them from the store at start-up.
 */
export class Catalog {
  private readonly workers = new WorkerDirectory();
  /** CreateWorker request_id → worker id, for as long as the worker exists. */
  private readonly createRequests = new Map<string, string>();
  /**
   * CreateWorker request_id → the create in progress. Claimed before the
   * first await, so concurrent calls with one id make one worker: the
   * others wait for it and answer the same.
   */
  private readonly pendingCreates = new Map<string, { fingerprint: string; workerId: string; response: Promise<CreateWorkerResponse> }>();
  private readonly deletes: WorkerDeletes;
  readonly allocations = new AllocationManager();
  private readonly restoredLeases: RestoredLeases;

  constructor(private readonly init: CatalogInit) {
    this.restoredLeases = new RestoredLeases(
      init.offer,
      this.allocations,
      (workerId, code, message) => init.addDiagnostic(DiagnosticSeverity.WARNING, code, message, workerId),
      (workerId, code, message) => init.addDiagnostic(DiagnosticSeverity.INFO, code, message, workerId),
    );
    this.deletes = new WorkerDeletes({
      store: init.store,
      storeBoundMs: init.limits.flushTimeoutMs,
      stop: (session) => this.stop(session),
      forget: (session) => this.forgetDeleted(session),
      health: init.health,
    });
    // Once the store writes again, each worker writes and announces what it could not (WorkerJournal.catchUp).
    init.health.onStatusChange(() => {
      if (init.health.storeDegraded || init.health.closed) return;
      for (const session of this.workers.values()) session.events.catchUp();
    });
  }

  /** Every hosted worker's session. */
  sessions(): IterableIterator<WorkerSession> {
    return this.workers.values();
  }

  /** Workers hosted. */
  get size(): number {
    return this.workers.size;
  }

  /** The session a request's WorkerRef names, or NOT_FOUND / RUNTIME_MISMATCH. */
  session(field: string, ref: WorkerRef | undefined): WorkerSession {
    const checked = checkWorkerRef(field, ref);
    this.checkRuntimeId(`${field}.runtime_id`, checked.runtimeId);
    const session = this.workers.get(checked.workerId);
    if (!session) throw notFound("worker_id", checked.workerId);
    return session;
  }

  /** Refuses a runtime id that is not this runtime's. */
  checkRuntimeId(field: string, runtimeId: string): void {
    checkId(field, runtimeId);
    const own = this.init.runtimeId;
    if (runtimeId !== own) {
      throw new RuntimeError(
        Code.InvalidArgument,
        ErrorReason.RUNTIME_MISMATCH,
        `${field}: "${runtimeId}" is not this runtime (this is "${own}")`,
        {
          field,
          runtime_id: own,
        },
      );
    }
  }

  /**
   * Creates a worker (idempotent by request_id), with its initial run if
   * asked. Concurrent calls with one request_id share one creation.
   */
  async create(request: CreateWorkerRequest): Promise<CreateWorkerResponse> {
    this.checkRuntimeId("runtime_id", request.runtimeId);
    checkCreateWorkerCounts(request, this.init.limits);
    checkRequestId("request_id", request.requestId);
    this.checkTextFields(request);
    const { requestId } = request;
    const fingerprint = createFingerprint(request);
    const repeated = this.repeatedCreate(requestId, fingerprint);
    if (repeated) return repeated;
    if (requestId === "") return this.createNew(request, fingerprint, () => {});
    const pending = this.pendingCreates.get(requestId);
    if (pending) {
      if (pending.fingerprint !== fingerprint) {
        throw idempotencyConflict(requestId, "to create a different worker", { worker_id: pending.workerId });
      }
      return cloneMessage(CreateWorkerResponseSchema, await pending.response);
    }
    // Synchronous from the checks above to this claim: no await in between.
    const claim = { fingerprint, workerId: "", response: Promise.resolve(create(CreateWorkerResponseSchema)) };
    claim.response = this.createNew(request, fingerprint, (workerId) => (claim.workerId = workerId));
    this.pendingCreates.set(requestId, claim);
    try {
      return await claim.response;
    } finally {
      this.pendingCreates.delete(requestId);
    }
  }

  /**
   * Creates a new worker. A given initial input is checked first, like
   * SendInput checks it (runtime accepting work, worker connected, input
   * valid), so a refused create leaves nothing behind: no worker, no
   * event, no lease. Its directories are located on the host once, for the
   * mounts' overlap check and the leases both. `named` learns the new
   * worker's id before the first await.
   */
  private async createNew(
    request: CreateWorkerRequest,
    fingerprint: string,
    named: (workerId: string) => void,
  ): Promise<CreateWorkerResponse> {
    const { limits, offer, health } = this.init;
    health.checkAcceptingWork();
    const resolved = offer.resolveSelector(request.profile);
    const profile = resolved.selector;
    const capabilities = offer.checkCapabilities(request.capabilities, request.workspace !== undefined, resolved.policies);
    const ref = create(WorkerRefSchema, { runtimeId: this.init.runtimeId, workerId: newId("w") });
    named(ref.workerId);
    // Asks the host's file system (off the event loop, within limits.hostPathTimeoutMs), when a policy names programs.
    const checkingPrograms = offer.checkPrograms(capabilities, resolved.policies);
    if (checkingPrograms) await checkingPrograms;
    const workspace = request.workspace
      ? offer.checkWorkspace(request.workspace.root, request.workspace.path, resolved.policies)
      : undefined;
    const mounts = checkMounts(request.mounts, {
      capabilities,
      workspace,
      policies: resolved.policies,
      maxMounts: limits.maxMounts,
      checkPath: (...args) => offer.checkWorkspace(...args),
    });
    this.checkRoom();
    const worker = create(WorkerSchema, {
      ref,
      displayName: request.displayName,
      intent: request.intent,
      profile,
      capabilities,
      labels: request.labels,
      status: WorkerStatus.IDLE,
      usage: {},
      ...(workspace ? { workspace: { root: workspace.root, path: workspace.path } } : {}),
      mounts,
    });
    // Decided from the worker itself: its profile may bring its own provider key.
    worker.connectivity = workerConnectivity(offer, worker);
    const initialInput = request.initialInput && request.initialInput.text !== "" ? request.initialInput : undefined;
    // Refuse before anything exists; the same check SendInput makes on the worker.
    if (initialInput) checkAcceptsInput(worker, this.init.sessionDeps.backend !== undefined);
    // Without a workspace there is nothing to locate (mounts need one), and no await before the first write.
    const leases = worker.workspace ? await locatedLeases(worker, offer) : [];
    checkMountsApart(leases);
    // Asks the host again only for a place outside its root as located before (the root may have been re-pointed).
    const checkingRoots = offer.locations.checkInsideRoots(leases);
    if (checkingRoots) await checkingRoots;
    // While they were located the runtime may have begun to drain, or filled up.
    health.checkAcceptingWork();
    this.checkRoom();
    worker.createdAt = worker.updatedAt = this.workers.nextCreationTime(new Date());
    this.allocations.acquireAll(ref, leases, new Date());
    let session: WorkerSession;
    try {
      const record = { createRequestId: request.requestId, createFingerprint: fingerprint };
      session = await WorkerSession.create(worker, record, this.init.sessionDeps);
    } catch (error) {
      this.allocations.release(ref.workerId);
      throw storeError(error);
    }
    this.workers.add(session);
    if (request.requestId !== "") this.createRequests.set(request.requestId, ref.workerId);
    this.init.publish({ case: "workerCreated", value: cloneMessage(WorkerSchema, worker) });
    let initialRun: Run | undefined;
    let initialInputError: ErrorDetail | undefined;
    if (initialInput) {
      try {
        initialRun = await typedStoreErrors(session.send(initialInput, BusyPolicy.REJECT, ""));
      } catch (error) {
        // The worker exists now; say why its input was not accepted rather than fail the create.
        if (!(error instanceof RuntimeError)) throw error;
        initialInputError = create(ErrorDetailSchema, { reason: error.reason, metadata: error.metadata });
      }
    }
    return create(CreateWorkerResponseSchema, {
      worker: cloneMessage(WorkerSchema, session.worker),
      ...(initialRun ? { initialRun } : {}),
      ...(initialInputError ? { initialInputError } : {}),
    });
  }

  /** Refuses a new worker past limits.maxWorkers. */
  private checkRoom(): void {
    const { maxWorkers } = this.init.limits;
    if (this.workers.size >= maxWorkers) {
      throw new RuntimeError(Code.ResourceExhausted, ErrorReason.LIMIT_EXCEEDED, `the runtime already hosts ${this.workers.size} workers`, {
        limit: String(maxWorkers),
      });
    }
  }

  /**
   * CreateWorker's free-text fields and labels, checked before anything
   * else reads the request: the request_id fingerprint encodes it, and
   * protobuf-es refuses (or, encoding, rewrites) text that is not Unicode.
   */
  private checkTextFields(request: CreateWorkerRequest): void {
    const { limits } = this.init;
    checkIdentifyingText("display_name", request.displayName, limits.maxDisplayNameBytes);
    checkIdentifyingText("intent", request.intent, limits.maxIntentBytes, { lines: true });
    checkLabels("labels", request.labels, limits.maxLabels, limits.maxLabelValueBytes);
    // Unlike a selector's (checkLabels), a new worker's values are identifying text, as they always were.
    for (const [key, value] of Object.entries(request.labels)) checkIdentifyingText(`labels[${key}]`, value, limits.maxLabelValueBytes);
    if (request.initialInput) checkTextBytes("initial_input.text", request.initialInput.text, limits.maxInputBytes);
  }

  /** Workers in creation order, paginated and filtered by status and labels. */
  list(request: ListWorkersRequest): ListWorkersResponse {
    const { limits } = this.init;
    this.checkRuntimeId("runtime_id", request.runtimeId);
    const pageSize = resolvePageSize("page_size", request.pageSize, limits.defaultPageSize, limits.maxPageSize);
    checkEnumList("statuses", request.statuses, WorkerStatusSchema);
    // UNSPECIFIED matches every status (see worker.proto).
    const statuses = request.statuses.includes(WorkerStatus.UNSPECIFIED) ? [] : request.statuses;
    checkLabels("label_selector", request.labelSelector, limits.maxLabels, limits.maxLabelValueBytes);
    // The filters a token is bound to, in one spelling whatever the request's order or repeats.
    const filter = [[...new Set(statuses)].sort(), Object.entries(request.labelSelector).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))];
    const after = this.init.pageTokens.decode("page_token", "workers", filter, request.pageToken);
    if (typeof after === "number") throw invalidArgument("page_token", "is not a valid page token");
    const selector = Object.entries(request.labelSelector);
    const { workers, more } = this.workers.page(
      after,
      pageSize,
      (worker) =>
        (statuses.length === 0 || statuses.includes(worker.status)) && selector.every(([key, value]) => worker.labels[key] === value),
    );
    // Bounded by bytes too: workers that do not fit start the next page.
    const budget = new ResponseBudget(responseBudgetBytes(limits));
    const fitting = workers.findIndex((worker) => !budget.take(toBinary(WorkerSchema, worker).byteLength));
    const page = fitting < 0 ? workers : workers.slice(0, fitting);
    const last = page[page.length - 1];
    return create(ListWorkersResponseSchema, {
      workers: page.map((worker) => cloneMessage(WorkerSchema, worker)),
      nextPageToken: (more || page.length < workers.length) && last ? this.init.pageTokens.encode("workers", filter, orderKey(last)) : "",
    });
  }

  /** Stops a worker: cancels its runs, releases its leases, refuses input. Idempotent. */
  async stop(session: WorkerSession): Promise<void> {
    await typedStoreErrors(session.stop());
    this.allocations.release(session.workerId);
  }

  /**
   * Deletes a stopped or failed worker (or any worker, with force); see
   * worker-deletes.ts for how a failing or unanswering store is met.
   */
  async delete(session: WorkerSession, force: boolean): Promise<void> {
    const status = session.worker.status;
    if (status !== WorkerStatus.STOPPED && status !== WorkerStatus.FAILED && !force) {
      throw new RuntimeError(
        Code.FailedPrecondition,
        ErrorReason.WORKER_NOT_STOPPED,
        `worker ${session.workerId} is not stopped; stop it first or set force`,
      );
    }
    return this.deletes.delete(session);
  }

  /** A worker the store has deleted: out of the catalog, its leases and request id forgotten, its removal published. */
  private forgetDeleted(session: WorkerSession): void {
    this.workers.remove(session);
    this.init.health.forgetWorker(session.workerId);
    this.allocations.release(session.workerId);
    if (session.record.createRequestId !== "") this.createRequests.delete(session.record.createRequestId);
    this.init.publish({ case: "workerRemoved", value: cloneMessage(WorkerRefSchema, session.worker.ref ?? create(WorkerRefSchema)) });
  }

  /** A worker's stored state is damaged: FAILED with a diagnostic, leases released; others are served. */
  quarantine(workerId: string, message: string): void {
    const session = this.workers.get(workerId);
    if (!session) return;
    this.init.addDiagnostic(DiagnosticSeverity.ERROR, "store.worker_quarantined", message, workerId);
    this.allocations.release(workerId);
    // Users read plain words; `message` (which file, how) is for the diagnostic.
    this.init.sessionDeps.background.start(session.quarantine(DAMAGED_WORKER_MESSAGE));
  }

  /** Restores workers from the store at start-up, with their request ids and leases. */
  async restore(restored: readonly RestoredWorker[]): Promise<void> {
    const leasing: Worker[] = [];
    for (const item of restored) {
      const connectivity = workerConnectivity(this.init.offer, item.record.worker);
      const session = await WorkerSession.restore(item, this.init.sessionDeps, connectivity);
      this.workers.add(session);
      // The store names the damage among its open diagnostics (store.worker_quarantined); repeating it listed it twice.
      if (item.quarantined !== undefined) continue;
      if (session.record.createRequestId !== "") this.createRequests.set(session.record.createRequestId, session.workerId);
      const status = session.worker.status;
      if (status !== WorkerStatus.STOPPED && status !== WorkerStatus.FAILED) leasing.push(session.worker);
    }
    await this.restoredLeases.restore(leasing);
  }

  /**
   * Refuses a run of a worker restored without its leases, once a worker
   * restored while its directories did not answer has looked for them again
   * (worker-leases.ts).
   */
  checkRunnable(session: WorkerSession): Promise<void> {
    return this.restoredLeases.checkRunnable(session.worker);
  }

  /** The answer to a repeated CreateWorker: the same worker, or IDEMPOTENCY_CONFLICT for other content. */
  private repeatedCreate(requestId: string, fingerprint: string): CreateWorkerResponse | undefined {
    if (requestId === "") return undefined;
    const existing = this.createRequests.get(requestId);
    const session = existing !== undefined ? this.workers.get(existing) : undefined;
    if (!session) return undefined;
    if (session.record.createFingerprint !== fingerprint) {
      throw idempotencyConflict(requestId, "to create a different worker", { worker_id: session.workerId });
    }
    return create(CreateWorkerResponseSchema, { worker: cloneMessage(WorkerSchema, session.worker) });
  }
}

/** Fingerprint of a CreateWorker request without its request_id (labels in a stable order). */
function createFingerprint(request: CreateWorkerRequest): string {
  const copy = cloneMessage(CreateWorkerRequestSchema, request);
  copy.requestId = "";
  copy.labels = Object.fromEntries(Object.entries(copy.labels).sort(([a], [b]) => a.localeCompare(b)));
  return createHash("sha256")
    .update(toBinary(CreateWorkerRequestSchema, copy, { writeUnknownFields: false }))
    .digest("hex");
}
