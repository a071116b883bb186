import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { writeFile, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { RuntimeHealth } from "../gen/worker_runtime/v1/backend_pb.js";
import type { WorkerRef } from "../gen/worker_runtime/v1/common_pb.js";
import { RunStatus } from "../gen/worker_runtime/v1/run_pb.js";
import { RuntimeRegistry } from "../gen/worker_runtime/v1/runtime_registry_pb.js";
import { WorkerCatalog } from "../gen/worker_runtime/v1/worker_catalog_pb.js";
import { WorkerInteraction } from "../gen/worker_runtime/v1/worker_interaction_pb.js";
import { WorkerObservation, type WatchWorkerResponse } from "../gen/worker_runtime/v1/worker_observation_pb.js";
import { startCli, type CliProcess } from "../test/support/cli-process.js";
import { interleavedMedians, percentile, printFigure } from "./support/report.js";

/**
 * The Backend's costs (issue 10), every process separate as deployed:
 * eight `serve` runtimes (memory store) of 1,000 workers each behind one
 * `backend` process.
 *
 * - fanout.list: the first page (500) of ListWorkers across all eight
 *   through the Backend, against the same page from one runtime direct.
 * - fanout.list_spanning (informational): a page that crosses from one
 *   runtime into the next (two rounds of upstream calls).
 * - fanout.list_one_down: the first runtime SIGSTOPped after it was READY
 *   (its socket accepts, nothing answers): the page costs at most its
 *   per-runtime deadline.
 * - fanout.relay: watch events/s of one run streamed through the Backend
 *   against the same watch direct (alternating rounds), and the extra
 *   latency of a lone event (the run's first) seen by both watchers at once.
 */
const RUNTIMES = 8;
const WORKERS_PER_RUNTIME = 1_000;
const PAGE = 500;
const FANOUT_TIMEOUT_MS = 1_000;
const RELAY_TOKENS = 3_000;

interface Clients {
  catalog: Client<typeof WorkerCatalog>;
  interaction: Client<typeof WorkerInteraction>;
  observation: Client<typeof WorkerObservation>;
  registry: Client<typeof RuntimeRegistry>;
  close(): void;
}

function connect(address: string): Clients {
  const baseUrl = `http://${address}`;
  const sessionManager = new Http2SessionManager(baseUrl);
  const transport = createGrpcTransport({ baseUrl, sessionManager });
  return {
    catalog: createClient(WorkerCatalog, transport),
    interaction: createClient(WorkerInteraction, transport),
    observation: createClient(WorkerObservation, transport),
    registry: createClient(RuntimeRegistry, transport),
    close: () => sessionManager.abort(),
  };
}

export async function run(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), "wr-fanout-"));
  const provider = await startProvider();
  const processes: CliProcess[] = [];
  const clients: Clients[] = [];
  try {
    const runtimes = await Promise.all(
      Array.from({ length: RUNTIMES }, async (_, i) => {
        const cli = startCli([
          "serve",
          "--port",
          "0",
          "--runtime-id",
          `rt-${i}`,
          "--openai-base-url",
          provider.baseURL,
          "--openai-keyless",
        ]);
        processes.push(cli);
        return { id: `rt-${i}`, cli, address: (await cli.listening).h2c };
      }),
    );
    await writeFile(
      join(dir, "backend.json"),
      JSON.stringify({ runtimes: runtimes.map((r) => ({ id: r.id, url: `http://${r.address}` })) }),
    );
    const backendCli = startCli([
      "backend",
      "--port",
      "0",
      "--runtime-id",
      "zz-embedded",
      "--config",
      join(dir, "backend.json"),
      "--fanout-timeout-ms",
      String(FANOUT_TIMEOUT_MS),
    ]);
    processes.push(backendCli);
    const backend = connect((await backendCli.listening).h2c);
    clients.push(backend);
    const direct = runtimes.map((r) => connect(r.address));
    clients.push(...direct);
    await waitAllReady(backend);
    await Promise.all(direct.map((c, i) => fill(c, `rt-${i}`)));

    // fanout.list
    const first = direct[0] as Clients;
    const lists = await interleavedMedians(
      {
        direct: () => timed(() => first.catalog.listWorkers({ runtimeId: "rt-0", pageSize: PAGE })),
        backend: () => timed(() => backend.catalog.listWorkers({ pageSize: PAGE })),
      },
      { warmups: 3, rounds: 15 },
    );
    printFigure("fanout.list", lists.backend, "ms", { ratio: lists.backend / lists.direct, target: "<=2" });
    printFigure("fanout.list.direct", lists.direct, "ms");

    // fanout.list_spanning: the page after 750 of rt-0's workers takes 250 from rt-0 and 250 from rt-1.
    const skip = await backend.catalog.listWorkers({ pageSize: 500 });
    const skip2 = await backend.catalog.listWorkers({ pageSize: 250, pageToken: skip.nextPageToken });
    const spanning = await interleavedMedians(
      {
        direct: () => timed(() => first.catalog.listWorkers({ runtimeId: "rt-0", pageSize: PAGE })),
        backend: () => timed(() => backend.catalog.listWorkers({ pageSize: PAGE, pageToken: skip2.nextPageToken })),
      },
      { warmups: 2, rounds: 9 },
    );
    printFigure("fanout.list_spanning", spanning.backend, "ms", { ratio: spanning.backend / spanning.direct });

    // fanout.relay
    await relay(backend, first);

    // fanout.list_one_down: rt-0 stops answering while the Backend still thinks it READY.
    runtimes[0]?.cli.child.kill("SIGSTOP");
    const down: number[] = [];
    for (let i = 0; i < 3; i++) {
      const start = performance.now();
      const page = await backend.catalog.listWorkers({ pageSize: PAGE });
      down.push(performance.now() - start);
      if (page.failedRuntimes[0]?.runtimeId !== "rt-0") throw new Error("the stopped runtime was not named");
    }
    const worst = Math.max(...down);
    printFigure("fanout.list_one_down", worst, "ms", { ratio: worst / FANOUT_TIMEOUT_MS, target: "<=1.2" });
    runtimes[0]?.cli.child.kill("SIGCONT");
  } finally {
    for (const c of clients) c.close();
    for (const p of processes) p.kill();
    provider.kill("SIGKILL");
    await rm(dir, { recursive: true, force: true });
  }
}

/** Events/s of one run's watch, through the Backend and direct, plus a lone event's extra latency. */
async function relay(backend: Clients, direct: Clients): Promise<void> {
  const rates = await interleavedMedians(
    {
      direct: () => watchRate(direct, backend),
      backend: () => watchRate(backend, backend),
    },
    { warmups: 1, rounds: 5 },
  );
  printFigure("fanout.relay", rates.backend, "events/s", { ratio: rates.backend / rates.direct, target: ">=0.7" });
  printFigure("fanout.relay.direct", rates.direct, "events/s");
  const extra: number[] = [];
  for (let i = 0; i < 20; i++) extra.push(await loneEventExtra(backend, direct));
  printFigure("fanout.relay.lone_event_extra.p50", percentile(extra, 0.5), "ms");
  printFigure("fanout.relay.lone_event_extra.p99", percentile(extra, 0.99), "ms");
}

/** Watches one run of RELAY_TOKENS streamed tokens through `watcher`; events per second from input to completion. */
async function watchRate(watcher: Clients, creator: Clients): Promise<number> {
  const { worker } = await creator.catalog.createWorker({ runtimeId: "rt-0" });
  const ref = worker?.ref as WorkerRef;
  const controller = new AbortController();
  const stream = watcher.observation.watchWorker({ worker: ref }, { signal: controller.signal })[Symbol.asyncIterator]();
  await stream.next();
  let events = 0;
  const start = performance.now();
  await creator.interaction.sendInput({ worker: ref, input: { text: "go" } });
  try {
    for (;;) {
      const { value, done } = await stream.next();
      if (done) throw new Error("watch ended early");
      events += value.events.length;
      if (completed(value)) return events / ((performance.now() - start) / 1000);
    }
  } finally {
    controller.abort();
  }
}

/** Both watchers on one worker; the run's first durable event's arrival through the Backend minus direct, in ms. */
async function loneEventExtra(backend: Clients, direct: Clients): Promise<number> {
  const { worker } = await backend.catalog.createWorker({ runtimeId: "rt-0" });
  const ref = worker?.ref as WorkerRef;
  const controller = new AbortController();
  const firstEvent = async (clients: Clients): Promise<() => Promise<number>> => {
    const stream = clients.observation.watchWorker({ worker: ref }, { signal: controller.signal })[Symbol.asyncIterator]();
    await stream.next();
    return async () => {
      for (;;) {
        const { value, done } = await stream.next();
        if (done) throw new Error("watch ended early");
        if (value.events.some((e) => e.seq > 0n)) return performance.now();
      }
    };
  };
  let runId = "";
  try {
    const viaBackend = (await firstEvent(backend))();
    const viaDirect = (await firstEvent(direct))();
    runId = (await direct.interaction.sendInput({ worker: ref, input: { text: "go" } })).run?.runId ?? "";
    const [b, d] = await Promise.all([viaBackend, viaDirect]);
    return b - d;
  } finally {
    controller.abort();
    if (runId) await direct.interaction.cancelRun({ worker: ref, runId });
  }
}

function completed(message: WatchWorkerResponse): boolean {
  return message.events.some((e) => e.kind.case === "runChanged" && [RunStatus.COMPLETED, RunStatus.FAILED].includes(e.kind.value.status));
}

async function timed(call: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await call();
  return performance.now() - start;
}

async function waitAllReady(backend: Clients): Promise<void> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const { runtimes } = await backend.registry.listRuntimes({});
    if (runtimes.length === RUNTIMES + 1 && runtimes.every((r) => r.health === RuntimeHealth.READY)) return;
    if (Date.now() > deadline) throw new Error("runtimes not READY within 60 s");
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Creates WORKERS_PER_RUNTIME workers on one runtime, 16 at a time. */
async function fill(clients: Clients, runtimeId: string): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < WORKERS_PER_RUNTIME) {
        next++;
        await clients.catalog.createWorker({ runtimeId, displayName: `w-${next}` });
      }
    }),
  );
}

/** The paced fake provider of the relay bench, unpaced, in its own process. */
async function startProvider(): Promise<{ baseURL: string; kill: (signal: NodeJS.Signals) => void }> {
  const script = fileURLToPath(new URL("./support/relay-provider.ts", import.meta.url));
  const child: ChildProcess = spawn(process.execPath, ["--import", "tsx", script, String(RELAY_TOKENS), "0"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const [line] = (await once(child.stdout as NodeJS.ReadableStream, "data")) as [Buffer];
  return { baseURL: line.toString("utf8").trim(), kill: (signal) => child.kill(signal) };
}
