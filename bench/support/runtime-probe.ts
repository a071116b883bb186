import { openSync, readSync } from "node:fs";
import { monitorEventLoopDelay, performance, PerformanceObserver } from "node:perf_hooks";

/**
 * Preloaded (`--import`) into the runtime process the relay and capacity
 * benches start, never part of the product: answers `reset` and `report`
 * over the IPC channel with the process's event-loop delay (the longest
 * stretches the loop was held) and CPU time since the last reset. Only
 * active when the bench sets WR_BENCH_PROBE=1 and gives the child an IPC
 * channel.
 */
export interface ProbeReport {
  /** Event-loop delay quantiles in ms (monitorEventLoopDelay, 10 ms resolution). */
  loopP50Ms: number;
  loopP99Ms: number;
  loopMaxMs: number;
  /**
   * p99 and max of the process's CPU time between two ticks of a 10 ms
   * timer, in ms. A stretch where the loop was held by the process's own
   * work shows as CPU time; a stretch where the process was only waiting
   * for a CPU (on a shared, overloaded host) shows as delay above but not
   * here, so this separates the runtime's blocks from the machine's load.
   */
  busyP99Ms: number;
  busyMaxMs: number;
  /**
   * p99 and max of the time the main thread waited for a CPU (runnable, not
   * running) between two ticks of the same timer, in ms, from Linux's
   * schedstat; NaN where it cannot be read. On a host shared with the
   * provider and the watchers, a late tick whose wait is most of its delay
   * was the scheduler's, not the runtime's own work.
   */
  runQueueP99Ms: number;
  runQueueMaxMs: number;
  /** The longest garbage-collection pause and all pauses together since the last reset, in ms. */
  gcMaxMs: number;
  gcTotalMs: number;
  /** User + system CPU time since the last reset, in ms. */
  cpuMs: number;
  /** Wall time since the last reset, in ms. */
  wallMs: number;
  /** Share of that time the event loop was busy (performance.eventLoopUtilization): near 1, the loop is the limit. */
  loopUtilization: number;
}

if (process.env["WR_BENCH_PROBE"] === "1" && process.send) {
  const histogram = monitorEventLoopDelay({ resolution: 10 });
  histogram.enable();
  let cpuSince = process.cpuUsage();
  let wallSince = performance.now();
  let utilizationSince = performance.eventLoopUtilization();
  let busy: number[] = [];
  let gcPauses: number[] = [];
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) gcPauses.push(entry.duration);
  }).observe({ entryTypes: ["gc"] });
  // One CPU reading and one schedstat read per tick: the probe shares the loop it measures.
  let lastTickCpu = process.cpuUsage();
  let runQueue: number[] = [];
  const waitNsOf = mainThreadWaitReader();
  let lastWaitNs = waitNsOf();
  setInterval(() => {
    const cpu = process.cpuUsage();
    busy.push((cpu.user - lastTickCpu.user + cpu.system - lastTickCpu.system) / 1000);
    lastTickCpu = cpu;
    const waitNs = waitNsOf();
    runQueue.push((waitNs - lastWaitNs) / 1e6);
    lastWaitNs = waitNs;
  }, 10).unref();
  const quantile = (values: number[], p: number): number => {
    const sorted = [...values].sort((a, b) => a - b);
    return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))] ?? 0;
  };
  process.on("message", (message: { id: number; op: "reset" | "report" }) => {
    if (message.op === "reset") {
      histogram.reset();
      busy = [];
      runQueue = [];
      gcPauses = [];
      cpuSince = process.cpuUsage();
      wallSince = performance.now();
      utilizationSince = performance.eventLoopUtilization();
      process.send?.({ id: message.id });
      return;
    }
    const cpu = process.cpuUsage(cpuSince);
    const report: ProbeReport = {
      loopP50Ms: histogram.percentile(50) / 1e6,
      loopP99Ms: histogram.percentile(99) / 1e6,
      loopMaxMs: histogram.max / 1e6,
      busyP99Ms: quantile(busy, 0.99),
      busyMaxMs: Math.max(0, ...busy),
      runQueueP99Ms: quantile(runQueue, 0.99),
      runQueueMaxMs: Math.max(0, ...runQueue),
      gcMaxMs: Math.max(0, ...gcPauses),
      gcTotalMs: gcPauses.reduce((sum, ms) => sum + ms, 0),
      cpuMs: (cpu.user + cpu.system) / 1000,
      wallMs: performance.now() - wallSince,
      loopUtilization: performance.eventLoopUtilization(utilizationSince).utilization,
    };
    process.send?.({ id: message.id, report });
  });
  // The IPC channel must not keep the process alive after the server stops.
  process.channel?.unref();
}

/**
 * Reads the nanoseconds the main thread has waited on a run queue
 * (/proc/self/task/PID/schedstat, second field); NaN off Linux. The file is
 * opened once and read from its start each time: opening it every 10 ms
 * was most of the probe's own cost.
 */
function mainThreadWaitReader(): () => number {
  let fd: number;
  try {
    fd = openSync(`/proc/self/task/${process.pid}/schedstat`, "r");
  } catch {
    return () => Number.NaN;
  }
  const buffer = Buffer.alloc(128);
  return () => {
    try {
      const length = readSync(fd, buffer, 0, buffer.length, 0);
      return Number(buffer.toString("latin1", 0, length).split(" ")[1]);
    } catch {
      return Number.NaN;
    }
  };
}
