import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import {
  RuntimeCapabilitiesSchema,
  RuntimeLimitsSchema,
  RuntimeSchema,
  type RuntimeStatus,
  StoreKind,
  WorkerCountsSchema,
  type Runtime as RuntimeSummary,
} from "../../gen/worker_runtime/v1/runtime_pb.js";
import { type Worker, WorkerStatus } from "../../gen/worker_runtime/v1/worker_pb.js";
import type { ExecutionOffer } from "./execution-offer.js";
import { byteBounds, type Limits } from "./limits.js";
import type { StoreKindName } from "./store.js";

/** What the summary is cut from. */
export interface RuntimeSummaryInit {
  runtimeId: string;
  displayName: string;
  version: string;
  startedAt: Date;
  storeKind: StoreKindName;
  status: RuntimeStatus;
  limits: Limits;
  offer: ExecutionOffer;
  workers: Iterable<Worker>;
  diagnosticCount: number;
}

/**
 * The GetRuntime summary: identity, status, the bounds clients must respect
 * (the wire subset of {@link Limits}), what runs can use, and worker counts.
 */
export function runtimeSummary(init: RuntimeSummaryInit): RuntimeSummary {
  const { limits, offer } = init;
  const counts = create(WorkerCountsSchema);
  for (const worker of init.workers) {
    switch (worker.status) {
      case WorkerStatus.IDLE:
        counts.idle++;
        break;
      case WorkerStatus.RUNNING:
        counts.running++;
        break;
      case WorkerStatus.STOPPED:
        counts.stopped++;
        break;
      case WorkerStatus.FAILED:
        counts.failed++;
        break;
      default:
        break;
    }
  }
  return create(RuntimeSchema, {
    runtimeId: init.runtimeId,
    displayName: init.displayName,
    version: init.version,
    startedAt: timestampFromDate(init.startedAt),
    storeKind: init.storeKind === "fs" ? StoreKind.FS : StoreKind.MEMORY,
    status: init.status,
    limits: create(RuntimeLimitsSchema, {
      maxPageSize: limits.maxPageSize,
      maxInputBytes: limits.maxInputBytes,
      maxQueueDepth: limits.maxQueueDepth,
      maxTranscriptRead: limits.maxTranscriptRead,
      maxMessageBytes: limits.maxMessageBytes,
      maxWatchersPerWorker: limits.maxWatchersPerWorker,
      eventRetention: limits.eventRetention,
      eventRetentionBytes: limits.eventRetentionBytes,
      maxSubscriberBacklog: limits.maxSubscriberBacklog,
      maxSubscriberBacklogBytes: limits.maxSubscriberBacklogBytes,
      maxWorkers: limits.maxWorkers,
      maxLabels: limits.maxLabels,
      maxMounts: limits.maxMounts,
      ...offer.executionLimits(),
      ...byteBounds(limits),
    }),
    capabilities: create(RuntimeCapabilitiesSchema, {
      executionBackend: offer.backendName(),
      executionAvailable: offer.notConnectedReason() === undefined,
      executionUnavailableReason: offer.notConnectedReason() ?? "",
      profiles: offer.profiles(),
      toolCapabilities: offer.toolCapabilities(),
      shellSandbox: offer.shellSandbox(),
      workspaceRoots: offer.rootNames(),
    }),
    workerCounts: counts,
    diagnosticCount: init.diagnosticCount,
  });
}
