import { type BenchChild, startRelayProcesses } from "./support/child-processes.js";
import { median } from "./support/report.js";
export async function run(): Promise<void> {
  const children: BenchChild[] = [];
  try {
    const { runtime, client } = await startRelayProcesses(children);
    const RUNS = 200;
    await client.request({ op: "prepare", runs: RUNS });
    const per: number[] = [];
    const rounds = Number(process.env["ZZ_ROUNDS"] ?? 14);
    for (let i = 0; i < rounds; i++) {
      await runtime.resetProbe();
      await client.request({ op: "capacity", runs: RUNS, chunks: 2, rate: 20, startMs: 1000, settleMs: 0 });
      const r = await runtime.report();
      if (i >= 4) per.push((r.cpuMs * 1000) / RUNS);
    }
    console.log(`zz.per_run median ${median(per).toFixed(0)} us  [${per.map((v) => v.toFixed(0)).join(" ")}]`);
  } finally {
    for (const child of children) await child.stop();
  }
}
