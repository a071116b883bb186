import { create } from "@bufbuild/protobuf";
import type { WorkerRef } from "../gen/worker_runtime/v1/common_pb.js";
import { CreateWorkerRequestSchema } from "../gen/worker_runtime/v1/worker_catalog_pb.js";
import { SendInputRequestSchema } from "../gen/worker_runtime/v1/worker_interaction_pb.js";
import { createRuntime } from "../src/runtime/index.js";
import { replyWith, ScriptedBackend } from "../test/support/scripted-backend.js";
import { median, printFigure } from "./support/report.js";

/**
 * The core's own CPU per run: an embedded Runtime (memory store) with a
 * scripted backend, no network. Every round sends one input to each of
 * WORKERS workers at once; each run commits the user's message, streams two
 * deltas, commits a 64-character answer and ends, so a run makes the same
 * durable writes and events as a provider run. The figure is the process's
 * CPU per run (median of ROUNDS after WARMUPS).
 *
 * capacity.cpu_per_run is what a whole run costs the `serve` process (the
 * SendInput call, the provider request, delivery to a watcher); this is the
 * part of it that is the core's (SendInput's admission, the run's records
 * and events, its end), measured without the noise of three processes, so
 * that a change to the core shows here when capacity cannot resolve it.
 */
const WORKERS = 200;
const WARMUPS = 5;
const ROUNDS = 15;
/** Time for the last run's end to be written after its script returns (memory store: microtasks). */
const SETTLE_MS = 20;

export async function run(): Promise<void> {
  let pending = 0;
  let allEnded: (() => void) | undefined;
  const reply = replyWith("x".repeat(64), 2);
  const backend = new ScriptedBackend(async (request, sink, signal) => {
    const outcome = await reply(request, sink, signal);
    if (--pending === 0) setTimeout(() => allEnded?.(), SETTLE_MS);
    return outcome;
  });
  const runtime = await createRuntime({ executionBackend: backend });
  const workers: (WorkerRef | undefined)[] = [];
  for (let i = 0; i < WORKERS; i++) {
    const { worker } = await runtime.createWorker(create(CreateWorkerRequestSchema, { runtimeId: runtime.runtimeId }));
    workers.push(worker?.ref);
  }
  const round = async (): Promise<number> => {
    backend.requests.length = 0;
    backend.signals.length = 0;
    pending = WORKERS;
    const ended = new Promise<void>((resolve) => (allEnded = resolve));
    const before = process.cpuUsage();
    await Promise.all(workers.map((worker) => runtime.sendInput(create(SendInputRequestSchema, { worker, input: { text: "hello" } }))));
    await ended;
    const used = process.cpuUsage(before);
    return (used.user + used.system) / WORKERS;
  };
  for (let i = 0; i < WARMUPS; i++) await round();
  const results: number[] = [];
  for (let i = 0; i < ROUNDS; i++) results.push(await round());
  printFigure("run_cost.core_cpu_per_run", median(results), "us");
  await runtime.close();
}
