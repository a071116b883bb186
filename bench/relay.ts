import { createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import OpenAI from "openai";
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { performance } from "node:perf_hooks";
import { RunStatus } from "../gen/worker_runtime/v1/run_pb.js";
import { WorkerCatalog } from "../gen/worker_runtime/v1/worker_catalog_pb.js";
import { WorkerInteraction } from "../gen/worker_runtime/v1/worker_interaction_pb.js";
import { WorkerObservation } from "../gen/worker_runtime/v1/worker_observation_pb.js";
import { createOpenAIBackend } from "../src/engine/index.js";
import { createRuntime, silentLogger } from "../src/runtime/index.js";
import { startRuntimeServer } from "../src/server/index.js";
import { runFloods } from "./support/relay-floods.js";

/**
 * Relay overhead: a 1,000-token streamed reply from the fake
 * provider, observed through WatchWorker over gRPC, against the `openai` SDK
 * reading the same reply from the same fake server directly. The fake paces
 * one token per millisecond (faster than any hosted model), so the figure
 * is what the runtime adds on top of a quick provider. The provider runs in
 * its own process, as a real one would. Rounds alternate direct and relayed
 * so drift hits both alike.
 *
 * Then the flood figures (bench/support/relay-floods.ts): the provider, the
 * real `serve` and the watchers each in their own process.
 */
const TOKENS = 1_000;
const ROUNDS = 15;
const WARMUPS = 2;

interface Timing {
  ttftMs: number;
  totalMs: number;
}

export async function run(): Promise<void> {
  const provider = await startProvider();
  const backend = createOpenAIBackend({ apiKey: "sk-bench", baseURL: provider.baseURL });
  const runtime = await createRuntime({ logger: silentLogger, executionBackend: backend });
  const server = await startRuntimeServer({ runtime, host: "127.0.0.1", port: 0, logger: silentLogger });
  const baseUrl = `http://${server.h2Address}`;
  const sessions = new Http2SessionManager(baseUrl);
  const transport = createGrpcTransport({ baseUrl, sessionManager: sessions });
  const catalog = createClient(WorkerCatalog, transport);
  const interaction = createClient(WorkerInteraction, transport);
  const observation = createClient(WorkerObservation, transport);
  const direct = new OpenAI({ apiKey: "sk-bench", baseURL: provider.baseURL, maxRetries: 0 });

  const directRound = async (): Promise<Timing> => {
    const start = performance.now();
    let ttft = -1;
    const stream = await direct.chat.completions.create({
      model: "bench",
      messages: [{ role: "user", content: "go" }],
      stream: true,
      stream_options: { include_usage: true },
    });
    for await (const chunk of stream) {
      if (ttft < 0 && chunk.choices[0]?.delta.content) ttft = performance.now() - start;
    }
    return { ttftMs: ttft, totalMs: performance.now() - start };
  };

  const relayRound = async (): Promise<Timing> => {
    const { worker } = await catalog.createWorker({ runtimeId: runtime.runtimeId });
    const controller = new AbortController();
    const watch = observation.watchWorker({ worker: worker?.ref }, { signal: controller.signal })[Symbol.asyncIterator]();
    await watch.next(); // the snapshot: the observer is attached before input is sent
    const start = performance.now();
    let ttft = -1;
    await interaction.sendInput({ worker: worker?.ref, input: { text: "go" } });
    try {
      for (;;) {
        const { value, done } = await watch.next();
        if (done) throw new Error("watch ended early");
        for (const event of value.events) {
          if (ttft < 0 && event.kind.case === "textDelta") ttft = performance.now() - start;
          if (event.kind.case === "runChanged" && event.kind.value.status === RunStatus.COMPLETED) {
            return { ttftMs: ttft, totalMs: performance.now() - start };
          }
          if (event.kind.case === "runChanged" && event.kind.value.status === RunStatus.FAILED) {
            throw new Error(`relayed run failed: ${event.kind.value.error?.message ?? ""}`);
          }
        }
      }
    } finally {
      controller.abort();
      await watch.return?.();
    }
  };

  try {
    for (let i = 0; i < WARMUPS; i++) {
      await directRound();
      await relayRound();
    }
    const directs: Timing[] = [];
    const relays: Timing[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      directs.push(await directRound());
      relays.push(await relayRound());
    }
    const directTotal = median(directs.map((t) => t.totalMs));
    const relayTotal = median(relays.map((t) => t.totalMs));
    const extraTtft = relays.map((t, i) => t.ttftMs - (directs[i] as Timing).ttftMs);
    print("relay.total_time", relayTotal, "ms", `ratio=${(relayTotal / directTotal).toFixed(2)}`, "target=<=1.10");
    print("relay.direct_total_time", directTotal, "ms");
    print("relay.extra_ttft.p50", percentile(extraTtft, 0.5), "ms");
    print("relay.extra_ttft.p99", percentile(extraTtft, 0.99), "ms");
  } finally {
    sessions.abort();
    await server.close(0);
    provider.child.kill("SIGKILL");
  }
  await runFloods();
}

/** Starts the paced fake provider in a child process and reads its base URL. */
async function startProvider(): Promise<{ baseURL: string; child: ChildProcess }> {
  const script = fileURLToPath(new URL("./support/relay-provider.ts", import.meta.url));
  const child = spawn(process.execPath, ["--import", "tsx", script, String(TOKENS), "1"], { stdio: ["ignore", "pipe", "inherit"] });
  const [line] = (await once(child.stdout as NodeJS.ReadableStream, "data")) as [Buffer];
  return { baseURL: line.toString("utf8").trim(), child };
}

function print(figure: string, value: number, unit: string, ...comparison: string[]): void {
  console.log([figure, `${value.toFixed(2)} ${unit}`, ...comparison].join("  "));
}

function median(values: readonly number[]): number {
  return percentile(values, 0.5);
}

/** Nearest-rank quantile. */
function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))] as number;
}
