import { type BenchChild, type ClientChild, type RuntimeChild, startRelayProcesses } from "./support/child-processes.js";
import { availableParallelism } from "node:os";
import { processCpuMs } from "./support/process-cpu.js";
import { median, printFigure } from "./support/report.js";

/**
 * Capacity: how many concurrent runs one runtime carries at low added
 * latency. Each run streams 20 chunks/s from the provider (a quick hosted
 * model) to one watcher; the count steps up 100 at a time, and the figure
 * is the largest count at which the p99 latency from the provider's write
 * to the watcher's decode stayed at or under 50 ms. The provider, the real
 * `serve` (memory store) and the watchers each run in their own process, so
 * the latency is the relay's plus two loopback hops. CPU per chunk is the
 * runtime process's user + system time over the chunks it relayed; each step
 * also prints how many cores the three processes used together, and the p99
 * of each part of the step (the second after the settle, the steady middle,
 * and from the first run's end on), to show which one decides the figure.
 *
 * Each step runs for CHUNKS / RATE seconds after a warm-up (its workers and
 * watchers are created before it is measured); runs start evenly spread over
 * START_MS, and chunks written before SETTLE_MS after the last start are not
 * counted (starting runs is not the steady state measured). The bench stops
 * at the first step over the bound, at MAX_RUNS, or when the next step would
 * end past TIME_BUDGET_MS (less the time kept for the per-run figure).
 *
 * capacity.cpu_per_run is what a run costs the runtime apart from its
 * chunks: SendInput, starting the run and its provider request, ending it
 * (records, events, transcript). A run's CPU is P + chunks · C, so the
 * bench runs PER_RUN_RUNS runs twice more, once with FEW_CHUNKS chunks each
 * and once with MORE_CHUNKS, in alternation (PER_RUN_ROUNDS times, the
 * median of each kind kept, so both see the same machine load), and solves
 * the two equations for P. These counts are fixed, not BENCH_CAPACITY_*,
 * so the figure compares across settings; starts are spread over
 * PER_RUN_START_MS so that starting runs does not saturate the runtime.
 */
const RATE = 20;
/**
 * BENCH_CAPACITY_CHUNKS: chunks per run of every step (default 120, 6 s). Few
 * chunks per run weigh a run's fixed cost more (to profile it). At least
 * MIN_CHUNKS: a run must stream longer than SETTLE_MS for a step to have
 * steady-state samples.
 */
const MIN_CHUNKS = 20;
const CHUNKS = positiveIntegerEnv("BENCH_CAPACITY_CHUNKS", 120, MIN_CHUNKS);
const START_MS = 1_000;
const SETTLE_MS = 500;
const STEP = 100;
/** BENCH_CAPACITY_MAX_RUNS caps the steps, to profile or compare CPU per chunk at a fixed count. */
const MAX_RUNS = positiveIntegerEnv("BENCH_CAPACITY_MAX_RUNS", 3_000, STEP);
const TARGET_P99_MS = 50;
const TARGET_RUNS = 1_000;
const TIME_BUDGET_MS = 180_000;
const PER_RUN_RUNS = 200;
const FEW_CHUNKS = 10;
const MORE_CHUNKS = 60;
const PER_RUN_ROUNDS = 3;
const PER_RUN_START_MS = 2_000;
/** The per-run figure's steps take about 25 s; the ladder leaves this much for them. */
const PER_RUN_RESERVE_MS = 35_000;

/** An integer environment setting, at least `min`; anything else is a clear error rather than a NaN step count. */
function positiveIntegerEnv(name: string, fallback: number, min: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value < min)
    throw new RangeError(`${name} must be an integer of at least ${min}, not ${JSON.stringify(raw)}`);
  return value;
}

/**
 * The runtime's CPU per run apart from its chunks, in µs: PER_RUN_RUNS runs
 * with FEW_CHUNKS chunks each and with MORE_CHUNKS, alternated; from the
 * median CPU of each, cpu = runs · P + runs · chunks · C solved for P.
 */
async function cpuPerRunUs(client: ClientChild, runtime: RuntimeChild): Promise<number> {
  await client.request({ op: "prepare", runs: PER_RUN_RUNS });
  const cpuMs = { few: [] as number[], more: [] as number[] };
  for (let round = 0; round < PER_RUN_ROUNDS; round++) {
    for (const kind of ["few", "more"] as const) {
      const chunks = kind === "few" ? FEW_CHUNKS : MORE_CHUNKS;
      await runtime.resetProbe();
      // Latency is not what these steps measure: every chunk is a sample (settle 0).
      await client.request({ op: "capacity", runs: PER_RUN_RUNS, chunks, rate: RATE, startMs: PER_RUN_START_MS, settleMs: 0 });
      cpuMs[kind].push((await runtime.report()).cpuMs);
    }
  }
  const few = median(cpuMs.few);
  const more = median(cpuMs.more);
  const perChunkUs = ((more - few) * 1000) / (PER_RUN_RUNS * (MORE_CHUNKS - FEW_CHUNKS));
  const perRunUs = (few * 1000) / PER_RUN_RUNS - FEW_CHUNKS * perChunkUs;
  const rounds = (values: number[]): string => values.map((ms) => ((ms * 1000) / PER_RUN_RUNS).toFixed(0)).join(", ");
  console.log(
    `capacity.per_run ${PER_RUN_RUNS} runs: runtime cpu per run with ${FEW_CHUNKS} chunks ${rounds(cpuMs.few)} us, ` +
      `with ${MORE_CHUNKS} chunks ${rounds(cpuMs.more)} us; so ${perChunkUs.toFixed(1)} us per chunk and ${perRunUs.toFixed(0)} us per run besides`,
  );
  return perRunUs;
}

interface StepResult {
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  samples: number;
  // A part with no samples is NaN in the client, null once it has crossed IPC (JSON).
  p99ByPhaseMs: { afterStarts: number | null; steady: number | null; ends: number | null };
}

/** A part's p99; a part with no samples (short runs: BENCH_CAPACITY_CHUNKS) comes over IPC as null, not NaN. */
function phaseMs(p99: number | null): string {
  return p99 === null || Number.isNaN(p99) ? "none" : `${p99.toFixed(0)} ms`;
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
      if (performance.now() - started + lastStepMs * 1.3 > TIME_BUDGET_MS - PER_RUN_RESERVE_MS) {
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
      const phases = result.p99ByPhaseMs;
      console.log(
        `capacity.step ${runs} runs: p50 ${result.p50Ms.toFixed(1)} ms, p99 ${result.p99Ms.toFixed(1)} ms, max ${result.maxMs.toFixed(0)} ms, ` +
          // Which part of the step decides the p99: the starts' tail, the steady middle, or the runs' ends (they end together).
          `p99 after the starts ${phaseMs(phases.afterStarts)}, steady ${phaseMs(phases.steady)}, at the ends ${phaseMs(phases.ends)}, ` +
          `runtime cpu ${cpuUs.toFixed(1)} us/chunk (${((probe.cpuMs / probe.wallMs) * 100).toFixed(0)}% of a core, loop busy ${(probe.loopUtilization * 100).toFixed(0)}%), ` +
          `loop delay p99 ${probe.loopP99Ms.toFixed(0)} ms (max ${probe.loopMaxMs.toFixed(0)}), cpu between ticks max ${probe.busyMaxMs.toFixed(0)} ms, ` +
          `gc max ${probe.gcMaxMs.toFixed(0)} ms (${((probe.gcTotalMs / probe.cpuMs) * 100).toFixed(0)}% of its cpu); ` +
          `watchers' process ${((clientCpuMs * 1000) / chunks).toFixed(1)} us/chunk, provider ${((providerCpuMs * 1000) / chunks).toFixed(1)} us/chunk; ` +
          // The three share the machine: near its core count, the step is bound by the machine, not only by the runtime's loop.
          `the three processes ${((probe.cpuMs + clientCpuMs + providerCpuMs) / probe.wallMs).toFixed(2)} of ${availableParallelism()} cores`,
      );
      // CPU per chunk of the largest step carried (or of the first one, if none was).
      if (carried === 0 || result.p99Ms <= TARGET_P99_MS) cpuPerChunkUs = cpuUs;
      if (result.p99Ms > TARGET_P99_MS) break;
      carried = runs;
    }
    printFigure("capacity.runs_at_p99_50ms", carried, "runs", { ratio: carried / TARGET_RUNS, target: `>=${TARGET_RUNS}` });
    printFigure("capacity.cpu_per_chunk", cpuPerChunkUs, "us");
    printFigure("capacity.cpu_per_run", await cpuPerRunUs(client, runtime), "us");
  } finally {
    for (const child of children) await child.stop();
  }
}
