import { type BenchChild, startRelayProcesses } from "./support/child-processes.js";
import { processCpuMs } from "./support/process-cpu.js";
import { printFigure } from "./support/report.js";

/**
 * Capacity: how many concurrent runs one runtime carries at low added
 * latency. Each run streams 20 chunks/s from the provider (a quick hosted
 * model) to one watcher; the count steps up 100 at a time, and the figure
 * is the largest count at which the p99 latency from the provider's write
 * to the watcher's decode stayed at or under 50 ms. The provider, the real
 * `serve` (memory store) and the watchers each run in their own process, so
 * the latency is the relay's plus two loopback hops. CPU per chunk is the
 * runtime process's user + system time over the chunks it relayed.
 *
 * Each step runs for CHUNKS / RATE seconds after a warm-up (its workers and
 * watchers are created before it is measured); runs start evenly spread over
 * START_MS, and chunks written before SETTLE_MS after the last start are not
 * counted (starting runs is not the steady state measured). The bench stops
 * at the first step over the bound, at MAX_RUNS, or when the next step would
 * end past TIME_BUDGET_MS.
 */
const RATE = 20;
const CHUNKS = 120;
const START_MS = 1_000;
const SETTLE_MS = 500;
const STEP = 100;
/** BENCH_CAPACITY_MAX_RUNS caps the steps, to profile or compare CPU per chunk at a fixed count. */
const MAX_RUNS = Number(process.env["BENCH_CAPACITY_MAX_RUNS"] ?? 3_000);
const TARGET_P99_MS = 50;
const TARGET_RUNS = 1_000;
const TIME_BUDGET_MS = 180_000;

interface StepResult {
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  samples: number;
}

export async function run(): Promise<void> {
  const started = performance.now();
  const children: BenchChild[] = [];
  try {
    const { provider, runtime, client } = await startRelayProcesses(children);
    // Warm-up (JIT, lazily loaded modules, connection pools), not measured.
    await client.request({ op: "capacity", runs: STEP, chunks: 2 * RATE, rate: RATE, startMs: START_MS, settleMs: 0 });
    let carried = 0;
    let cpuPerChunkUs = 0;
    let lastStepMs = 0;
    for (let runs = STEP; runs <= MAX_RUNS; runs += STEP) {
      if (performance.now() - started + lastStepMs * 1.3 > TIME_BUDGET_MS) {
        console.log(`capacity: stopped at ${runs - STEP} runs, the time budget is spent`);
        break;
      }
      const stepStart = performance.now();
      await client.request({ op: "prepare", runs });
      await runtime.resetProbe();
      const providerCpuBefore = processCpuMs(provider.child.pid);
      const clientCpuBefore = processCpuMs(client.child.pid);
      const result = await client.request<StepResult>({
        op: "capacity",
        runs,
        chunks: CHUNKS,
        rate: RATE,
        startMs: START_MS,
        settleMs: SETTLE_MS,
      });
      const probe = await runtime.report();
      const providerCpuMs = processCpuMs(provider.child.pid) - providerCpuBefore;
      const clientCpuMs = processCpuMs(client.child.pid) - clientCpuBefore;
      lastStepMs = performance.now() - stepStart;
      const chunks = runs * CHUNKS;
      const cpuUs = (probe.cpuMs * 1000) / chunks;
      console.log(
        `capacity.step ${runs} runs: p50 ${result.p50Ms.toFixed(1)} ms, p99 ${result.p99Ms.toFixed(1)} ms, max ${result.maxMs.toFixed(0)} ms, ` +
          `runtime cpu ${cpuUs.toFixed(1)} us/chunk (${((probe.cpuMs / probe.wallMs) * 100).toFixed(0)}% of a core, loop busy ${(probe.loopUtilization * 100).toFixed(0)}%), ` +
          `loop delay p99 ${probe.loopP99Ms.toFixed(0)} ms (max ${probe.loopMaxMs.toFixed(0)}), cpu between ticks max ${probe.busyMaxMs.toFixed(0)} ms, ` +
          `gc max ${probe.gcMaxMs.toFixed(0)} ms (${((probe.gcTotalMs / probe.cpuMs) * 100).toFixed(0)}% of its cpu); ` +
          `watchers' process ${((clientCpuMs * 1000) / chunks).toFixed(1)} us/chunk, provider ${((providerCpuMs * 1000) / chunks).toFixed(1)} us/chunk`,
      );
      // CPU per chunk of the largest step carried (or of the first one, if none was).
      if (carried === 0 || result.p99Ms <= TARGET_P99_MS) cpuPerChunkUs = cpuUs;
      if (result.p99Ms > TARGET_P99_MS) break;
      carried = runs;
    }
    printFigure("capacity.runs_at_p99_50ms", carried, "runs", { ratio: carried / TARGET_RUNS, target: `>=${TARGET_RUNS}` });
    printFigure("capacity.cpu_per_chunk", cpuPerChunkUs, "us");
  } finally {
    for (const child of children) await child.stop();
  }
}
