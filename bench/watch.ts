import { create } from "@bufbuild/protobuf";
import { createClient, type Client, type ConnectRouter } from "@connectrpc/connect";
import { setImmediate as breathe, setTimeout as sleep } from "node:timers/promises";
import type { WorkerRef } from "../gen/worker_runtime/v1/common_pb.js";
import { WorkerEventSchema } from "../gen/worker_runtime/v1/events_pb.js";
import { ProfileSchema } from "../gen/worker_runtime/v1/profile_pb.js";
import { StopReason } from "../gen/worker_runtime/v1/run_pb.js";
import { WorkerCatalog } from "../gen/worker_runtime/v1/worker_catalog_pb.js";
import { WorkerInteraction } from "../gen/worker_runtime/v1/worker_interaction_pb.js";
import { WatchWorkerResponseSchema, WorkerObservation, type WatchWorkerResponse } from "../gen/worker_runtime/v1/worker_observation_pb.js";
import type { ExecutionBackend, RunOutcome, RunRequest, RunSink } from "../src/runtime/index.js";
import { interleavedMedians, medianOfRounds, percentile, printFigure } from "./support/report.js";
import { openTransport, startBareServer, startRuntimeBenchServer, type BenchServer, type RuntimeBenchServer } from "./support/servers.js";
import { StreamCounter } from "./support/stream-counter.js";

/**
 * Watch throughput: text deltas from a backend emitting as fast
 * as it can, delivered through WatchWorker over gRPC to 1 and to 100
 * subscribers, against a bare connect-node handler streaming the same
 * number of single-event messages (the per-message ceiling that batching
 * is meant to beat). Also the latency of a lone delta on an idle stream,
 * which batching must not hold back. Clients run in this process too, so
 * every figure includes their decoding.
 */
export async function run(): Promise<void> {
  const backend = new BenchBackend();
  const servers = new Servers();
  try {
    const runtime = await servers.runtime(backend);
    const bare = await servers.bare(bareWatchRoutes(FLOOD_DELTAS));
    const oneWatcher = await watchNewWorker(servers, runtime, 1);
    const one = await interleavedMedians({
      bare: () => bareRound(servers, bare, FLOOD_DELTAS),
      watch: () => floodRound(backend, oneWatcher, FLOOD_DELTAS),
    });
    printFigure("watch.bare_per_message", one.bare, "events/s");
    printFigure("watch.1_subscriber", one.watch, "events/s", { ratio: one.watch / one.bare, target: ">=3" });

    const fanOut = await watchNewWorker(servers, runtime, FAN_OUT);
    const hundred = await medianOfRounds(() => floodRound(backend, fanOut, FAN_OUT_DELTAS));
    printFigure("watch.100_subscribers", hundred, "events/s");
    printFigure("watch.100_subscribers.per_subscriber", hundred / FAN_OUT, "events/s");

    const lone = await watchNewWorker(servers, runtime, 1);
    printFigure("watch.lone_event_latency_p50", await loneEventLatencyMs(backend, lone), "ms");
  } finally {
    await servers.close();
  }
}

/** Deltas per round to one subscriber, and messages per bare round. */
const FLOOD_DELTAS = 100_000;
/** Deltas per round to 100 subscribers (every client decodes every event in this process). */
const FAN_OUT_DELTAS = 5_000;
const FAN_OUT = 100;
/** The backend lets the event loop run once per this many deltas. */
const BREATHE_EVERY = 256;
const LATENCY_SAMPLES = 200;

type RunScript = (request: RunRequest, sink: RunSink, signal: AbortSignal) => Promise<RunOutcome>;

/** A backend whose runs follow whatever script the bench sets. */
class BenchBackend implements ExecutionBackend {
  readonly name = "bench";
  script: RunScript = async () => ({ kind: "completed", stopReason: StopReason.END_TURN });

  availability() {
    return { available: true as const };
  }

  profiles() {
    return [create(ProfileSchema, { name: "companion", model: "bench", maxTurns: 1 })];
  }

  toolCapabilities(): string[] {
    return [];
  }

  execute(request: RunRequest, sink: RunSink, signal: AbortSignal): Promise<RunOutcome> {
    return this.script(request, sink, signal);
  }
}

/** Emits `count` text deltas as fast as it can, breathing now and then. */
function flood(count: number): RunScript {
  return async (request, sink) => {
    const blockId = `${request.run.runId}-b0`;
    for (let i = 1; i <= count; i++) {
      sink.textDelta(blockId, "tok ");
      if (i % BREATHE_EVERY === 0) await breathe();
    }
    return { kind: "completed", stopReason: StopReason.END_TURN };
  };
}

function textDeltasIn(message: WatchWorkerResponse): number {
  let count = 0;
  for (const event of message.events) if (event.kind.case === "textDelta") count++;
  return count;
}

/** Everything the bench opened, closed in the right order (clients first). */
class Servers {
  private readonly servers: BenchServer[] = [];
  private readonly sessions: (() => void)[] = [];
  private readonly counters: StreamCounter<WatchWorkerResponse>[] = [];

  async runtime(backend: ExecutionBackend): Promise<RuntimeBenchServer> {
    // One in-process client can fall behind a backend that never waits;
    // this measures throughput, not the slow-watcher cut-off (by count or by bytes).
    const limits = { maxSubscriberBacklog: 1_000_000, maxSubscriberBacklogBytes: 1024 * 1024 * 1024 };
    const server = await startRuntimeBenchServer({ executionBackend: backend, limits });
    this.servers.push(server);
    return server;
  }

  async bare(routes: (router: ConnectRouter) => void): Promise<BenchServer> {
    const server = await startBareServer(routes);
    this.servers.push(server);
    return server;
  }

  /** Generated WorkerObservation + interaction clients over a new HTTP/2 session. */
  clients(baseUrl: string): {
    observation: Client<typeof WorkerObservation>;
    interaction: Client<typeof WorkerInteraction>;
    catalog: Client<typeof WorkerCatalog>;
  } {
    const { transport, close } = openTransport(baseUrl, "grpc");
    this.sessions.push(close);
    return {
      observation: createClient(WorkerObservation, transport),
      interaction: createClient(WorkerInteraction, transport),
      catalog: createClient(WorkerCatalog, transport),
    };
  }

  track(counter: StreamCounter<WatchWorkerResponse>): StreamCounter<WatchWorkerResponse> {
    this.counters.push(counter);
    return counter;
  }

  async close(): Promise<void> {
    await Promise.all(this.counters.map((counter) => counter.close()));
    for (const close of this.sessions) close();
    await Promise.all(this.servers.map((server) => server.close()));
  }
}

/** A worker with `count` watchers, each on its own HTTP/2 session like separate clients. */
interface WatchedWorker {
  ref: WorkerRef;
  interaction: Client<typeof WorkerInteraction>;
  counters: StreamCounter<WatchWorkerResponse>[];
  /** Arrival time of the last message holding deltas (first watcher). */
  lastArrival: number;
  /** Deltas every watcher has received so far. */
  delivered: number;
}

async function watchNewWorker(servers: Servers, server: RuntimeBenchServer, count: number): Promise<WatchedWorker> {
  const { catalog, interaction } = servers.clients(server.baseUrl);
  const { worker } = await catalog.createWorker({ runtimeId: server.runtime.runtimeId });
  if (!worker?.ref) throw new Error("CreateWorker returned no worker");
  const ref = worker.ref;
  const watched: WatchedWorker = { ref, interaction, counters: [], lastArrival: 0, delivered: 0 };
  for (let i = 0; i < count; i++) {
    const { observation } = servers.clients(server.baseUrl);
    const onItems = i === 0 ? (at: number) => (watched.lastArrival = at) : undefined;
    watched.counters.push(
      servers.track(new StreamCounter((signal) => observation.watchWorker({ worker: ref }, { signal }), textDeltasIn, onItems)),
    );
  }
  await Promise.all(watched.counters.map((counter) => counter.ready));
  return watched;
}

/** One run of `deltas` deltas; events/s delivered, summed over the watchers. */
async function floodRound(backend: BenchBackend, watched: WatchedWorker, deltas: number): Promise<number> {
  backend.script = flood(deltas);
  watched.delivered += deltas;
  const start = performance.now();
  await watched.interaction.sendInput({ worker: watched.ref, input: { text: "go" } }, { timeoutMs: 30_000 });
  await Promise.all(watched.counters.map((counter) => counter.reach(watched.delivered)));
  return (deltas * watched.counters.length) / ((performance.now() - start) / 1000);
}

/**
 * The baseline: a bare connect-node handler streaming `count` pre-built
 * single-event messages as fast as connect-node can send them.
 */
function bareWatchRoutes(count: number): (router: ConnectRouter) => void {
  const message = create(WatchWorkerResponseSchema, {
    events: [create(WorkerEventSchema, { kind: { case: "textDelta", value: { runId: "run-1", blockId: "run-1-b0", text: "tok " } } })],
  });
  return (router) => {
    router.service(WorkerObservation, {
      async *watchWorker() {
        for (let i = 0; i < count; i++) yield message;
      },
    });
  };
}

async function bareRound(servers: Servers, bare: BenchServer, count: number): Promise<number> {
  const { observation } = servers.clients(bare.baseUrl);
  const start = performance.now();
  const counter = new StreamCounter((signal) => observation.watchWorker({}, { signal }), textDeltasIn);
  await counter.reach(count);
  const rate = count / ((performance.now() - start) / 1000);
  await counter.close();
  return rate;
}

/**
 * p50 of the time from one delta being emitted on an idle stream to the
 * client receiving it: batching must never hold a lone event back.
 */
async function loneEventLatencyMs(backend: BenchBackend, watched: WatchedWorker): Promise<number> {
  const [counter] = watched.counters;
  if (!counter) throw new Error("no watcher");
  let provideSink!: (sink: RunSink) => void;
  const sinkReady = new Promise<RunSink>((resolve) => (provideSink = resolve));
  let finish!: () => void;
  const finished = new Promise<void>((resolve) => (finish = resolve));
  backend.script = async (_request, sink, signal) => {
    provideSink(sink);
    await Promise.race([finished, new Promise((resolve) => signal.addEventListener("abort", resolve, { once: true }))]);
    return { kind: "completed", stopReason: StopReason.END_TURN };
  };
  await watched.interaction.sendInput({ worker: watched.ref, input: { text: "go" } }, { timeoutMs: 30_000 });
  const sink = await sinkReady;
  const warmups = 20;
  const samples: number[] = [];
  for (let i = 1; i <= warmups + LATENCY_SAMPLES; i++) {
    await sleep(2);
    const emitted = performance.now();
    sink.textDelta("lone", "x");
    await counter.reach(i);
    if (i > warmups) samples.push(watched.lastArrival - emitted);
  }
  finish();
  return percentile(samples, 0.5);
}
