import { createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { performance } from "node:perf_hooks";
import { WorkerCatalog } from "../gen/worker_runtime/v1/worker_catalog_pb.js";
import {
  startClientProcess,
  startFloodProvider,
  startRuntimeProcess,
  type BenchChild,
  type RuntimeChild,
} from "./support/child-processes.js";
import { median, percentile, printFigure } from "./support/report.js";

/**
 * What metrics and tracing cost (issue 14): two `serve` processes on the
 * same flood provider, one plain and one with `--metrics-port` plus the
 * OTLP trace exporter switched on by the standard OTEL_* variables, its
 * spans going to an in-memory sink in this process and its metrics scraped
 * every second. Rounds alternate the two runtimes.
 *
 * - overhead.watch: a 20,000-chunk flood relayed to a gRPC watcher in a
 *   client process of its own, chunks/s on vs off.
 * - overhead.unary: GetWorker latency from this process, one call at a
 *   time, p50 off / p50 on (so that, like the watch figure, higher is better).
 *
 * The bench fails if the "on" runtime exported no spans or its scrape shows
 * no runs: a figure must not come from instrumentation that is silently off.
 */
const WARMUPS = 1;
/** A flood lasts ~80 ms and six busy processes share two cores: with 5 rounds the watch ratio swung 0.67–1.23 between runs. */
const ROUNDS = 11;
const FLOOD_CHUNKS = 20_000;
const UNARY_CALLS = 1_500;
const SCRAPE_EVERY_MS = 1_000;

export async function run(): Promise<void> {
  const sink = await startSpanSink();
  const children: BenchChild[] = [];
  try {
    const provider = await startFloodProvider();
    children.push(provider);
    const off = await startRuntimeProcess(provider.baseURL);
    children.push(off);
    const on = await startRuntimeProcess(provider.baseURL, {
      args: ["--metrics-port", "0"],
      env: {
        OTEL_TRACES_EXPORTER: "otlp",
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${sink.url}/v1/traces`,
        OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: "http/protobuf",
        OTEL_SERVICE_NAME: "overhead-bench",
      },
    });
    children.push(on);
    const metricsUrl = metricsAddress(on);
    const scraper = new Scraper(metricsUrl);

    const clients = {
      off: await startClientProcess({ runtimeUrl: off.baseUrl, runtimeId: off.runtimeId, providerURL: provider.baseURL }),
      on: await startClientProcess({ runtimeUrl: on.baseUrl, runtimeId: on.runtimeId, providerURL: provider.baseURL }),
    };
    children.unshift(clients.off, clients.on);
    const unary = { off: await UnaryProbe.open(off), on: await UnaryProbe.open(on) };

    const watchRates = { off: [] as number[], on: [] as number[] };
    const unaryP50 = { off: [] as number[], on: [] as number[] };
    for (let round = 0; round < WARMUPS + ROUNDS; round++) {
      for (const side of round % 2 === 0 ? (["off", "on"] as const) : (["on", "off"] as const)) {
        const flood = await clients[side].request<{ totalMs: number }>({ op: "relay", runs: 1, chunks: FLOOD_CHUNKS });
        const latencies = await unary[side].measure(UNARY_CALLS);
        if (round >= WARMUPS) {
          watchRates[side].push(FLOOD_CHUNKS / (flood.totalMs / 1000));
          unaryP50[side].push(percentile(latencies, 0.5));
        }
      }
    }
    await scraper.stop();
    for (const probe of Object.values(unary)) probe.close();

    const scrape = scraper.last;
    if (!/worker_runtime_runs_total\{[^}]*\} [1-9]/.test(scrape)) throw new Error("the metrics scrape shows no finished runs");
    await sink.settled(5_000);
    if (sink.requests === 0) throw new Error("the traced runtime exported no spans to the sink");

    const watchOff = median(watchRates.off);
    const watchOn = median(watchRates.on);
    printFigure("overhead.watch", watchOn, "chunks/s", { ratio: watchOn / watchOff, target: ">=0.9" });
    printFigure("overhead.watch.off", watchOff, "chunks/s");
    const unaryOff = median(unaryP50.off);
    const unaryOn = median(unaryP50.on);
    printFigure("overhead.unary", unaryOn, "ms", { ratio: unaryOff / unaryOn, target: ">=0.9" });
    printFigure("overhead.unary.off", unaryOff, "ms");
    printFigure("overhead.spans_exported", sink.bytes / 1024, "KiB");
    printFigure("overhead.scrapes", scraper.count, "scrapes");
  } finally {
    for (const child of children) await child.stop();
    await sink.close();
  }
}

/** The metrics URL the "on" runtime printed ("worker-runtime metrics URL"). */
function metricsAddress(runtime: RuntimeChild): string {
  const url = runtime.startupLines.map((line) => /^worker-runtime metrics (\S+)/.exec(line)?.[1]).find((found) => found !== undefined);
  if (!url) throw new Error(`no metrics URL in: ${runtime.startupLines.join(" | ")}`);
  return url;
}

/** Scrapes the metrics endpoint every second, as Prometheus would (more often). */
class Scraper {
  last = "";
  count = 0;
  private readonly timer: NodeJS.Timeout;
  private inFlight: Promise<void> = Promise.resolve();

  constructor(private readonly url: string) {
    this.timer = setInterval(() => {
      this.inFlight = this.scrape();
    }, SCRAPE_EVERY_MS);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.inFlight;
    await this.scrape();
  }

  private async scrape(): Promise<void> {
    const response = await fetch(this.url);
    if (!response.ok) throw new Error(`metrics scrape answered ${response.status}`);
    this.last = await response.text();
    this.count++;
  }
}

/** GetWorker, one call at a time, on one HTTP/2 session of this process. */
class UnaryProbe {
  private constructor(
    private readonly sessions: Http2SessionManager,
    private readonly call: () => Promise<unknown>,
  ) {}

  static async open(runtime: RuntimeChild): Promise<UnaryProbe> {
    const sessions = new Http2SessionManager(runtime.baseUrl);
    const catalog = createClient(WorkerCatalog, createGrpcTransport({ baseUrl: runtime.baseUrl, sessionManager: sessions }));
    const { worker } = await catalog.createWorker({ runtimeId: runtime.runtimeId, displayName: "overhead" });
    return new UnaryProbe(sessions, () => catalog.getWorker({ worker: worker?.ref }));
  }

  async measure(calls: number): Promise<number[]> {
    const latencies: number[] = [];
    for (let i = 0; i < calls; i++) {
      const start = performance.now();
      await this.call();
      latencies.push(performance.now() - start);
    }
    return latencies;
  }

  close(): void {
    this.sessions.abort();
  }
}

/** An OTLP/HTTP receiver that keeps only counts: the in-memory span sink. */
interface SpanSink {
  url: string;
  requests: number;
  bytes: number;
  /** Waits until no export arrived for a moment (the batch processor's last flush), up to `maxMs`. */
  settled(maxMs: number): Promise<void>;
  close(): Promise<void>;
}

async function startSpanSink(): Promise<SpanSink> {
  let lastAt = 0;
  const sink = {
    url: "",
    requests: 0,
    bytes: 0,
    async settled(maxMs: number): Promise<void> {
      const deadline = performance.now() + maxMs;
      while (performance.now() < deadline && (sink.requests === 0 || performance.now() - lastAt < 1_000)) {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    },
    close: async (): Promise<void> => {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  const server: Server = createServer((request, response) => {
    request.on("data", (chunk: Buffer) => {
      sink.bytes += chunk.length;
    });
    request.on("end", () => {
      sink.requests++;
      lastAt = performance.now();
      response.writeHead(200, { "content-type": request.headers["content-type"] ?? "application/x-protobuf" });
      response.end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  sink.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return sink;
}
