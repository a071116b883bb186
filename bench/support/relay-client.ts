import { createClient as createConnectClient, type Client, type Transport } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import OpenAI from "openai";
import { performance } from "node:perf_hooks";
import { BusyPolicy, type WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { WorkerCatalog } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { WorkerInteraction } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import { WorkerObservation, type WatchWorkerResponse } from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import { createClient as createProductClient, createFastGrpcTransport } from "../../src/grpc-client/index.js";
import { CHUNK_CHARS, hostClockMs, floodText, stampsIn } from "./flood-text.js";
import { percentile } from "./report.js";

/**
 * The client side of the end-to-end benches, in its own process: watchers
 * (generated gRPC clients over HTTP/2, one session per 100 streams, like a
 * backend) and the `openai` SDK baseline reading the provider directly.
 * Driven over IPC by the bench; prints "ready" once it can take requests.
 */
const runtimeUrl = process.env["WR_RUNTIME_URL"] ?? "";
const runtimeId = process.env["WR_RUNTIME_ID"] ?? "";
const providerURL = process.env["WR_PROVIDER_URL"] ?? "";
const STREAMS_PER_SESSION = 100;

/**
 * The product's client stack (src/grpc-client's transport and createClient,
 * as the Backend and the CLI use them), or connect's own with
 * BENCH_CLIENT_TRANSPORT=connect, to compare the two on the same bench.
 */
const clientTransport = process.env["BENCH_CLIENT_TRANSPORT"] ?? "fast";
if (clientTransport !== "fast" && clientTransport !== "connect") {
  throw new Error(`BENCH_CLIENT_TRANSPORT must be "fast" or "connect", not ${JSON.stringify(clientTransport)}`);
}
const createTransport = clientTransport === "connect" ? createGrpcTransport : createFastGrpcTransport;
const createClient = clientTransport === "connect" ? createConnectClient : createProductClient;

const sessions: Http2SessionManager[] = [];
let streamsOnLastSession = STREAMS_PER_SESSION;
function transport(): Transport {
  if (streamsOnLastSession >= STREAMS_PER_SESSION) {
    sessions.push(new Http2SessionManager(runtimeUrl));
    streamsOnLastSession = 0;
  }
  streamsOnLastSession++;
  return createTransport({ baseUrl: runtimeUrl, sessionManager: sessions[sessions.length - 1] as Http2SessionManager });
}
const control = createTransport({ baseUrl: runtimeUrl, sessionManager: new Http2SessionManager(runtimeUrl) });
const catalog = createClient(WorkerCatalog, control);
const interaction = createClient(WorkerInteraction, control);
const direct = new OpenAI({ apiKey: "sk-bench", baseURL: providerURL, maxRetries: 0 });

/** One worker with one watcher that gathers its text. */
class WatchedWorker {
  text = "";
  firstDeltaAt = 0;
  /** Called after every message that brought text. */
  onText: ((worker: WatchedWorker, added: string) => void) | undefined;
  private ended: { resolve: () => void } | undefined;
  readonly ready: Promise<void>;
  private readonly abort = new AbortController();

  constructor(
    readonly ref: WorkerRef,
    observation: Client<typeof WorkerObservation>,
  ) {
    let markReady!: () => void;
    this.ready = new Promise((resolve) => (markReady = resolve));
    void this.consume(observation.watchWorker({ worker: ref }, { signal: this.abort.signal }), markReady);
  }

  /** Resets the gathered text and resolves once the next run of this worker ends. */
  nextRun(): Promise<void> {
    this.text = "";
    this.firstDeltaAt = 0;
    return new Promise((resolve) => (this.ended = { resolve }));
  }

  close(): void {
    this.abort.abort();
  }

  private async consume(stream: AsyncIterable<WatchWorkerResponse>, markReady: () => void): Promise<void> {
    try {
      for await (const message of stream) {
        markReady();
        let added = "";
        for (const event of message.events) {
          const kind = event.kind;
          if (kind.case === "textDelta") added += kind.value.text;
          else if (kind.case === "runChanged" && kind.value.status >= RunStatus.COMPLETED) {
            if (kind.value.status !== RunStatus.COMPLETED)
              process.stderr.write(`run ended ${RunStatus[kind.value.status]}: ${kind.value.error?.message ?? ""}\n`);
            this.ended?.resolve();
          }
        }
        if (added) {
          if (this.firstDeltaAt === 0) this.firstDeltaAt = performance.now();
          this.text += added;
          this.onText?.(this, added);
        }
      }
    } catch (error) {
      if (!this.abort.signal.aborted) process.stderr.write(`watch failed: ${String(error)}\n`);
    }
  }
}

async function newWatchedWorkers(count: number): Promise<WatchedWorker[]> {
  const workers: WatchedWorker[] = [];
  for (let i = 0; i < count; i++) {
    const { worker } = await catalog.createWorker({ runtimeId });
    if (!worker?.ref) throw new Error("CreateWorker returned no worker");
    workers.push(new WatchedWorker(worker.ref, createClient(WorkerObservation, transport())));
  }
  await Promise.all(workers.map((w) => w.ready));
  return workers;
}

interface FloodResult {
  totalMs: number;
  firstDeltaMs: number[];
}

const checkedFloods = new Set<number>();

/** `runs` concurrent floods relayed to watchers: SendInput to the whole text at every watcher. */
async function relayFloods(runs: number, chunks: number): Promise<FloodResult> {
  const workers = await newWatchedWorkers(runs);
  const whole = chunks * CHUNK_CHARS;
  const start = performance.now();
  const done = workers.map(
    (w) =>
      new Promise<number>((resolve) => {
        w.onText = (worker) => {
          if (worker.text.length >= whole) resolve(performance.now());
        };
      }),
  );
  const ended = workers.map((w) => w.nextRun());
  await Promise.all(workers.map((w) => interaction.sendInput({ worker: w.ref, input: { text: `flood ${chunks}` } })));
  const ends = await Promise.all(done);
  const totalMs = Math.max(...ends) - start;
  await Promise.all(ended);
  if (!checkedFloods.has(chunks)) {
    // Once per size: the relayed text is exactly what the provider sent.
    const expected = floodText(chunks);
    for (const w of workers) if (w.text !== expected) throw new Error("relayed text differs from the provider's");
    checkedFloods.add(chunks);
  }
  const firstDeltaMs = workers.map((w) => w.firstDeltaAt - start);
  for (const w of workers) w.close();
  return { totalMs, firstDeltaMs };
}

/** The baseline: the `openai` SDK reading `runs` concurrent floods with its own stream iterator. */
async function directFloods(runs: number, chunks: number): Promise<FloodResult> {
  const start = performance.now();
  const one = async (): Promise<number> => {
    const stream = await direct.chat.completions.create({
      model: "bench",
      messages: [{ role: "user", content: `flood ${chunks}` }],
      stream: true,
      stream_options: { include_usage: true },
    });
    let first = 0;
    let length = 0;
    for await (const chunk of stream) {
      const content = chunk.choices[0]?.delta.content;
      if (content) {
        if (first === 0) first = performance.now() - start;
        length += content.length;
      }
    }
    if (length !== chunks * CHUNK_CHARS) throw new Error("the SDK read a short flood");
    return first;
  };
  const firstDeltaMs = await Promise.all(Array.from({ length: runs }, one));
  return { totalMs: performance.now() - start, firstDeltaMs };
}

const capacityPool: WatchedWorker[] = [];

interface CapacityResult {
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  samples: number;
  /**
   * The p99 of the chunks written in each part of the step (NaN for a part
   * with no samples): the first second after the settle (the runs' starts
   * may still be draining), the steady middle, and from the first run's end
   * on (every run ends within about START_MS, so their ends come together).
   */
  p99ByPhaseMs: { afterStarts: number; steady: number; ends: number };
}

/** How long after the settle the "after starts" part of a capacity step lasts. */
const AFTER_STARTS_MS = 1_000;

/** Grows the pool of watched workers to `runs`, before a step is measured. */
async function prepareCapacity(runs: number): Promise<object> {
  if (capacityPool.length < runs) capacityPool.push(...(await newWatchedWorkers(runs - capacityPool.length)));
  return {};
}

/**
 * `runs` concurrent paced runs (started evenly over `startMs`), each with
 * its watcher; the latency of every chunk from the provider's write to the
 * watcher's decode. Chunks written before every run has started plus
 * `settleMs` are not counted: starting hundreds of runs (a request to the
 * provider each) is not the steady state measured, and its backlog would
 * otherwise decide the p99.
 */
async function capacity(runs: number, chunks: number, rate: number, startMs: number, settleMs: number): Promise<CapacityResult> {
  await prepareCapacity(runs);
  const workers = capacityPool.slice(0, runs);
  const latencies: number[] = [];
  const stamps: number[] = [];
  let steadyFrom = Number.POSITIVE_INFINITY;
  for (const w of workers) {
    w.onText = (_worker, added) => {
      const now = hostClockMs();
      for (const stamp of stampsIn(added)) {
        if (stamp < steadyFrom) continue;
        latencies.push(now - stamp);
        stamps.push(stamp);
      }
    };
  }
  let firstEnd = Number.POSITIVE_INFINITY;
  const ended = workers.map((w) => w.nextRun().then(() => (firstEnd = Math.min(firstEnd, hostClockMs()))));
  const spacing = startMs / runs;
  const sends: Promise<unknown>[] = [];
  for (let i = 0; i < workers.length; i++) {
    const w = workers[i] as WatchedWorker;
    sends.push(interaction.sendInput({ worker: w.ref, input: { text: `paced ${chunks} ${rate}` }, busyPolicy: BusyPolicy.REJECT }));
    if (i % 10 === 9) await new Promise((resolve) => setTimeout(resolve, spacing * 10));
  }
  await Promise.all(sends);
  steadyFrom = hostClockMs() + settleMs;
  await Promise.all(ended);
  for (const w of workers) w.onText = undefined;
  if (latencies.length === 0) throw new Error("no latency samples");
  return {
    p50Ms: percentile(latencies, 0.5),
    p99Ms: percentile(latencies, 0.99),
    maxMs: Math.max(...latencies),
    samples: latencies.length,
    p99ByPhaseMs: p99ByPhase(latencies, stamps, steadyFrom, firstEnd),
  };
}

/** The p99 of each part of a capacity step (see CapacityResult.p99ByPhaseMs); `stamps` are the samples' write times. */
function p99ByPhase(latencies: number[], stamps: number[], steadyFrom: number, firstEnd: number): CapacityResult["p99ByPhaseMs"] {
  const phases = { afterStarts: [] as number[], steady: [] as number[], ends: [] as number[] };
  for (let i = 0; i < latencies.length; i++) {
    const stamp = stamps[i] as number;
    const phase = stamp >= firstEnd ? phases.ends : stamp < steadyFrom + AFTER_STARTS_MS ? phases.afterStarts : phases.steady;
    phase.push(latencies[i] as number);
  }
  const p99 = (values: number[]): number => (values.length === 0 ? Number.NaN : percentile(values, 0.99));
  return { afterStarts: p99(phases.afterStarts), steady: p99(phases.steady), ends: p99(phases.ends) };
}

process.on(
  "message",
  (message: { id: number; op: string; runs: number; chunks: number; rate: number; startMs: number; settleMs: number }) => {
    const work =
      message.op === "relay"
        ? relayFloods(message.runs, message.chunks)
        : message.op === "direct"
          ? directFloods(message.runs, message.chunks)
          : message.op === "prepare"
            ? prepareCapacity(message.runs)
            : capacity(message.runs, message.chunks, message.rate, message.startMs, message.settleMs);
    work.then(
      (result) => process.send?.({ id: message.id, ...result }),
      (error: unknown) => process.send?.({ id: message.id, error: String(error) }),
    );
  },
);
process.on("disconnect", () => process.exit(0));
// A clean exit on stop, so `--cpu-prof` (BENCH_CPU_PROF_CLIENT) can write its profile.
process.on("SIGTERM", () => process.exit(0));
process.stdout.write("ready\n");
