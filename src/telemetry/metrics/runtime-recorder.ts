import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Counter, Histogram, type Registry } from "prom-client";
import { RunStatus, StopReason, type Run } from "../../../gen/worker_runtime/v1/run_pb.js";
import type { ProviderCallRecord, RuntimeMetrics, StoreAppendKind, WatchStreamKind } from "../../runtime/index.js";
import { BUCKETS } from "./buckets.js";

/** A prom-client child bound to one label set. */
type CounterChild = ReturnType<Counter["labels"]>;
type HistogramChild = ReturnType<Histogram["labels"]>;

/** The provider the OpenAI-compatible backend speaks to, as GenAI's `gen_ai.provider.name` calls it. */
const PROVIDER_NAME = "openai";

/**
 * Distinct `gen_ai_request_model` values kept; later models, and names
 * longer than {@link MAX_MODEL_LABEL_CHARS}, count as {@link OTHER_MODEL}.
 * The model comes from profiles, which any client with the token can push
 * in config bundles: without a bound each new name would add series to
 * every scrape for the life of the process.
 */
const MAX_MODEL_LABELS = 100;
const MAX_MODEL_LABEL_CHARS = 128;
const OTHER_MODEL = "_other";

/**
 * The core's metrics seam, recorded with prom-client. Label sets are bound
 * once (the fixed ones at construction, per-run and per-model ones on first
 * use, keyed without building label objects), so a report costs a map
 * lookup and prom-client's own update.
 */
export class RuntimeRecorder implements RuntimeMetrics {
  private readonly runs: Counter;
  private readonly runDuration: Histogram;
  private readonly runChildren = new Map<number, { count: CounterChild; duration: HistogramChild }>();
  private readonly delivered: Record<WatchStreamKind, { events: CounterChild; batch: HistogramChild }>;
  private readonly appends: Record<StoreAppendKind, HistogramChild>;
  private readonly groupCommitRecords: Histogram;
  private readonly groupCommitDuration: Histogram;
  private readonly fsync: Histogram;
  private readonly operationDuration: Histogram;
  private readonly firstChunk: Histogram;
  private readonly tokens: Histogram;
  private readonly modelChildren = new Map<string, ModelChildren>();

  constructor(registry: Registry) {
    const registers = [registry];
    this.runs = new Counter({
      name: "worker_runtime_runs_total",
      help: "Runs that reached a final status, by status and stop reason.",
      labelNames: ["status", "stop_reason"],
      registers,
    });
    this.runDuration = new Histogram({
      name: "worker_runtime_run_duration_seconds",
      help: "Run duration from start to final status (runs that never started are not observed).",
      labelNames: ["status"],
      buckets: [...BUCKETS.runSeconds],
      registers,
    });
    const events = new Counter({
      name: "worker_runtime_events_delivered_total",
      help: "Events sent to watchers, by stream kind (worker = WatchWorker, runtime = WatchRuntime, input = StreamInput).",
      labelNames: ["stream"],
      registers,
    });
    const batches = new Histogram({
      name: "worker_runtime_delivery_batch_size",
      help: "Events per batch a watch stream took from its subscription.",
      labelNames: ["stream"],
      buckets: [...BUCKETS.batchSizes],
      registers,
    });
    const deliveredFor = (stream: WatchStreamKind) => ({ events: events.labels(stream), batch: batches.labels(stream) });
    this.delivered = { worker: deliveredFor("worker"), runtime: deliveredFor("runtime"), input: deliveredFor("input") };
    const appends = new Histogram({
      name: "worker_runtime_store_append_duration_seconds",
      help: "Store appends until durable (memory or file store), by log.",
      labelNames: ["log"],
      buckets: [...BUCKETS.storeSeconds],
      registers,
    });
    this.appends = {
      worker_events: appends.labels("worker_events"),
      transcript: appends.labels("transcript"),
      runtime_events: appends.labels("runtime_events"),
    };
    this.groupCommitRecords = new Histogram({
      name: "worker_runtime_store_group_commit_records",
      help: "Records per group commit of the file store (one write and fdatasync).",
      buckets: [...BUCKETS.batchSizes],
      registers,
    });
    this.groupCommitDuration = new Histogram({
      name: "worker_runtime_store_group_commit_duration_seconds",
      help: "Write plus fdatasync of one group commit of the file store.",
      buckets: [...BUCKETS.storeSeconds],
      registers,
    });
    this.fsync = new Histogram({
      name: "worker_runtime_store_fsync_duration_seconds",
      help: "One fsync or fdatasync (file or directory) of the file store.",
      buckets: [...BUCKETS.storeSeconds],
      registers,
    });
    const genAiLabels = ["gen_ai_operation_name", "gen_ai_provider_name", "gen_ai_request_model"];
    this.operationDuration = new Histogram({
      name: "gen_ai_client_operation_duration_seconds",
      help: "GenAI operation duration: one streamed chat completion, retries included (OTel gen_ai.client.operation.duration).",
      labelNames: [...genAiLabels, "error_type"],
      buckets: [...BUCKETS.genAiSeconds],
      registers,
    });
    this.firstChunk = new Histogram({
      name: "gen_ai_client_operation_time_to_first_chunk_seconds",
      help: "Time from the request to the first chunk of the response stream (OTel gen_ai.client.operation.time_to_first_chunk).",
      labelNames: genAiLabels,
      buckets: [...BUCKETS.genAiSeconds],
      registers,
    });
    this.tokens = new Histogram({
      name: "gen_ai_client_token_usage",
      help: "Tokens per provider call as the provider reported them, by type (OTel gen_ai.client.token.usage).",
      labelNames: [...genAiLabels, "gen_ai_token_type"],
      buckets: [...BUCKETS.genAiTokens],
      registers,
    });
  }

  runEnded(run: Run): void {
    const key = run.status * 256 + run.stopReason;
    let children = this.runChildren.get(key);
    if (!children) {
      const status = enumLabel(RunStatus, run.status);
      children = { count: this.runs.labels(status, enumLabel(StopReason, run.stopReason)), duration: this.runDuration.labels(status) };
      this.runChildren.set(key, children);
    }
    children.count.inc();
    if (run.startedAt && run.endedAt) children.duration.observe(Math.max(0, timestampMs(run.endedAt) - timestampMs(run.startedAt)) / 1000);
  }

  eventsDelivered(stream: WatchStreamKind, count: number): void {
    const children = this.delivered[stream];
    children.events.inc(count);
    children.batch.observe(count);
  }

  storeAppended(kind: StoreAppendKind, seconds: number): void {
    this.appends[kind].observe(seconds);
  }

  storeGroupCommitted(records: number, seconds: number): void {
    this.groupCommitRecords.observe(records);
    this.groupCommitDuration.observe(seconds);
  }

  storeSynced(seconds: number): void {
    this.fsync.observe(seconds);
  }

  providerCalled(call: ProviderCallRecord): void {
    const children = this.forModel(call.model);
    const errorType = call.errorType ?? "";
    let duration = children.duration.get(errorType);
    if (!duration) {
      const labels = { ...children.labels, ...(call.errorType !== undefined ? { error_type: call.errorType } : {}) };
      duration = this.operationDuration.labels(labels);
      children.duration.set(errorType, duration);
    }
    duration.observe(call.durationSeconds);
    if (call.timeToFirstChunkSeconds !== undefined) children.firstChunk.observe(call.timeToFirstChunkSeconds);
    if (call.inputTokens !== undefined) children.input.observe(call.inputTokens);
    if (call.outputTokens !== undefined) children.output.observe(call.outputTokens);
  }

  private forModel(requested: string): ModelChildren {
    let children = this.modelChildren.get(requested);
    if (!children) {
      const model =
        this.modelChildren.size >= MAX_MODEL_LABELS || requested.length > MAX_MODEL_LABEL_CHARS || requested === OTHER_MODEL
          ? OTHER_MODEL
          : requested;
      children = this.modelChildren.get(model);
      if (children) return children;
      const labels = { gen_ai_operation_name: "chat", gen_ai_provider_name: PROVIDER_NAME, gen_ai_request_model: model };
      children = {
        labels,
        duration: new Map(),
        firstChunk: this.firstChunk.labels(labels),
        input: this.tokens.labels({ ...labels, gen_ai_token_type: "input" }),
        output: this.tokens.labels({ ...labels, gen_ai_token_type: "output" }),
      };
      this.modelChildren.set(model, children);
    }
    return children;
  }
}

/** The label sets of one model, bound on its first call. */
interface ModelChildren {
  labels: Record<string, string>;
  /** By error type ("" = success). */
  duration: Map<string, HistogramChild>;
  firstChunk: HistogramChild;
  input: HistogramChild;
  output: HistogramChild;
}

/** An enum value's name in lower case (RunStatus.COMPLETED → "completed"); unknown numbers as digits. */
function enumLabel(values: Record<number, string>, value: number): string {
  return (values[value] ?? String(value)).toLowerCase();
}
