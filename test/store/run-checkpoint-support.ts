import { cp, readdir, rm, stat } from "node:fs/promises";
import * as path from "node:path";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import type { FileStore } from "../../src/store/fs/index.js";
import { openStore, run } from "./fs-support.js";

/** The run index checkpoint of a worker of a data dir (see run-index-checkpoint.ts). */
export function checkpointPath(dir: string, workerId: string): string {
  return path.join(dir, "workers", workerId, "runs", "run-index.checkpoint");
}

/** Total bytes of a worker's run log segments. */
export async function runLogBytes(dir: string, workerId: string): Promise<number> {
  const runs = path.join(dir, "workers", workerId, "runs");
  let total = 0;
  for (const name of await readdir(runs)) if (name.endsWith(".log")) total += (await stat(path.join(runs, name))).size;
  return total;
}

/** Everything a reader can learn about a worker's runs: every page of listRuns, and getRun of each. */
export async function readRuns(store: FileStore, workerId: string): Promise<{ listed: unknown[]; got: unknown[] }> {
  const listed: Array<[number, string, RunStatus, string]> = [];
  let before: number | undefined;
  for (;;) {
    const page = await store.listRuns(workerId, before, 97);
    if (page.length === 0) break;
    for (const { ordinal, run } of page) listed.push([ordinal, run.runId, run.status, run.input?.text ?? ""]);
    before = page.at(-1)?.ordinal;
  }
  const got = [];
  for (const [, runId] of listed) {
    const found = await store.getRun(workerId, runId);
    got.push([runId, found?.status, found?.input?.text]);
  }
  return { listed, got };
}

/** What open restores for a worker's runs, plus every read: the view two opens must agree on. */
export async function openedView(dir: string, workerId: string) {
  const { store, opened } = await openStore(dir);
  try {
    const worker = opened.workers.find((w) => w.record.worker.ref?.workerId === workerId);
    return {
      diagnostics: opened.diagnostics.map((d) => d.code),
      recordsRead: store.stats.recordsRead,
      bytesRead: store.stats.bytesRead,
      restored: {
        quarantined: worker?.quarantined,
        runCount: worker?.runCount,
        unfinished: worker?.unfinishedRuns.map((r) => [r.runId, r.status, r.input?.text]),
        requests: worker?.recentRequestIds,
      },
      ...(await readRuns(store, workerId)),
    };
  } finally {
    await store.close();
  }
}

/** Copies a data dir as a crash would leave it, without its lock (held by this process or a dead one). */
export async function copyDataDir(from: string, to: string): Promise<void> {
  await cp(from, to, { recursive: true, filter: (src) => !path.basename(src).startsWith("LOCK") });
}

/**
 * The view of a copy of the data dir whose run index checkpoints are
 * removed, i.e. what the full scan of the run log restores: the reference
 * any open through a checkpoint must match exactly.
 */
export async function fullScanView(dir: string, workerId: string) {
  const copy = `${dir}-fullscan`;
  await copyDataDir(dir, copy);
  try {
    await rm(checkpointPath(copy, workerId), { force: true });
    return await openedView(copy, workerId);
  } finally {
    await rm(copy, { recursive: true, force: true });
  }
}

/**
 * Writes `count` runs from number `from` on, `batch` at a time (concurrently, so
 * they share fsyncs): each QUEUED then COMPLETED, every third one with a
 * request id, inputs of `inputBytes`. Returns the next run number.
 */
export async function writeRuns(
  store: FileStore,
  workerId: string,
  from: number,
  count: number,
  inputBytes = 200,
  batch = 50,
): Promise<number> {
  let next = from;
  while (next < from + count) {
    const numbers = Array.from({ length: Math.min(batch, from + count - next) }, (_, i) => next + i);
    const input = (n: number) => `${n}:`.padEnd(inputBytes, "x");
    const requestId = (n: number) => (n % 3 === 0 ? `req-${n}` : "");
    const fingerprint = (n: number) => ({ fingerprint: n % 3 === 0 ? `fp-${n}` : "" });
    await Promise.all(numbers.map((n) => store.putRun(workerId, run(`r${n}`, RunStatus.QUEUED, requestId(n), input(n)), fingerprint(n))));
    await Promise.all(
      numbers.map((n) => store.putRun(workerId, run(`r${n}`, RunStatus.COMPLETED, requestId(n), input(n)), fingerprint(n))),
    );
    next += numbers.length;
  }
  return next;
}
