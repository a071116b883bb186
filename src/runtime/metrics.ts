import type { Run } from "../../gen/worker_runtime/v1/run_pb.js";

/** Which kind of watch stream delivered events. */
export type WatchStreamKind = "worker" | "runtime" | "input";

/** Which store append was timed: a worker's events, its transcript, or the runtime-wide events. */
export type StoreAppendKind = "worker_events" | "transcript" | "runtime_events";

/** One call to the model provider (one streamed response, its retries included). */
export interface ProviderCallRecord {
  /** The requested model. */
  model: string;
  /** From the first request attempt to the end of the response stream. */
  durationSeconds: number;
  /** From the first request attempt to the first chunk of the response; absent when none came. */
  timeToFirstChunkSeconds?: number;
  /** Tokens the provider reported (absent when it reported no usage). */
  inputTokens?: number;
  outputTokens?: number;
  /** Why the call failed (a stable low-cardinality name); absent on success. */
  errorType?: string;
}

/**
 * The metrics seam. The core, the stores and execution backends report what
 * happened through it; what to do with the figures (Prometheus, OTel,
 * nothing) is the embedder's choice, so the core imports no metrics
 * library. Every method is called at most once per run, provider call,
 * delivered batch or store write, never per streamed chunk, and takes plain
 * values, so an implementation can keep its label sets pre-bound. Gauges
 * (workers, watchers) are not pushed here: an implementation reads them from
 * `Runtime.stats()` and `getRuntime()` when scraped.
 */
export interface RuntimeMetrics {
  /** A run reached a final status (COMPLETED, CANCELLED, FAILED, INTERRUPTED). */
  runEnded(run: Run): void;
  /** A watch stream took `count` events from its subscription to send as one batch. */
  eventsDelivered(stream: WatchStreamKind, count: number): void;
  /** A store append resolved (durable) or failed after `seconds`. */
  storeAppended(kind: StoreAppendKind, seconds: number): void;
  /** A durable store wrote one group commit of `records` records and fsynced it in `seconds`. */
  storeGroupCommitted(records: number, seconds: number): void;
  /** One fsync (file or directory) took `seconds`. */
  storeSynced(seconds: number): void;
  /** A model provider call ended. */
  providerCalled(call: ProviderCallRecord): void;
}

/** Metrics that go nowhere: the default, and what `--metrics-port` absent means. */
export const noopMetrics: RuntimeMetrics = {
  runEnded() {},
  eventsDelivered() {},
  storeAppended() {},
  storeGroupCommitted() {},
  storeSynced() {},
  providerCalled() {},
};

/**
 * `append` with its latency reported as `kind`. With {@link noopMetrics}
 * it is `append` itself, so metrics that are off cost nothing per write.
 */
export function timedAppend<A extends unknown[]>(
  metrics: RuntimeMetrics,
  kind: StoreAppendKind,
  append: (...args: A) => Promise<void>,
): (...args: A) => Promise<void> {
  if (metrics === noopMetrics) return append;
  return (...args) => {
    const started = performance.now();
    const done = (): void => metrics.storeAppended(kind, (performance.now() - started) / 1000);
    const write = append(...args);
    write.then(done, done);
    return write;
  };
}

/** What a watch stream calls with each batch it takes; undefined when metrics are off. */
export function deliveryCounter(metrics: RuntimeMetrics, stream: WatchStreamKind): ((count: number) => void) | undefined {
  if (metrics === noopMetrics) return undefined;
  return (count) => metrics.eventsDelivered(stream, count);
}
