import { spawn } from "node:child_process";
import { readdir } from "node:fs/promises";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { RUN_CHECKPOINT, RUN_CHECKPOINT_FILE } from "../../src/store/fs/run-log.js";
import { tempDataDir } from "./fs-support.js";
import { fullScanView, openedView } from "./run-checkpoint-support.js";

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => ({ dir, cleanup } = await tempDataDir()));
afterEach(async () => cleanup());

const childScript = path.join(path.dirname(fileURLToPath(import.meta.url)), "run-checkpoint-kill-child.ts");

/** Runs the child until it kills itself; returns the last run number it saw acknowledged. */
async function runChildUntilKilled(phase: "before-rename" | "after-rename"): Promise<{ acked: number; signal: NodeJS.Signals | null }> {
  const child = spawn(process.execPath, ["--import", "tsx", childScript, dir, phase], { stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout.on("data", (chunk: Buffer) => (out += chunk.toString()));
  child.stderr.on("data", (chunk: Buffer) => (err += chunk.toString()));
  const signal = await new Promise<NodeJS.Signals | null>((resolve) => child.once("exit", (_, s) => resolve(s)));
  if (signal !== "SIGKILL") throw new Error(`child ended without being killed: ${err}`);
  const acked = [...out.matchAll(/^acked (\d+)$/gm)].map((m) => Number(m[1])).at(-1) ?? 0;
  return { acked, signal };
}

/**
 * kill -9 in the middle of writing the run index checkpoint: before the
 * rename the temp file is left behind and the previous checkpoint is used;
 * after it the new one is. Either way every acknowledged run is there and
 * open answers exactly what the full scan of the log does.
 */
describe("run index checkpoint under SIGKILL", () => {
  it.each(["before-rename", "after-rename"] as const)("is safe to kill %s", async (phase) => {
    const { acked } = await runChildUntilKilled(phase);
    const runsDir = path.join(dir, "workers", "w1", "runs");
    const temps = (await readdir(runsDir)).filter((name) => name.startsWith(`${RUN_CHECKPOINT_FILE}.tmp-`));
    expect(temps.length, "a temp checkpoint is left only when killed before its rename").toBe(phase === "before-rename" ? 1 : 0);
    expect(acked).toBeGreaterThan(0);

    const reference = await fullScanView(dir, "w1");
    const view = await openedView(dir, "w1");
    expect(view.diagnostics).toEqual([]);
    // The checkpoint used covers at least one interval of records, which open did not read again.
    expect(reference.recordsRead - view.recordsRead, "records open did not read").toBeGreaterThanOrEqual(RUN_CHECKPOINT.everyRecords - 1);
    expect({ restored: view.restored, listed: view.listed, got: view.got }).toEqual({
      restored: reference.restored,
      listed: reference.listed,
      got: reference.got,
    });
    expect(view.restored.runCount).toBeGreaterThanOrEqual(acked);
    const got = new Map((view.got as Array<[string, RunStatus, string]>).map((entry) => [entry[0], entry]));
    for (let n = 1; n <= acked; n++) expect(got.get(`r${n}`)).toEqual([`r${n}`, RunStatus.COMPLETED, `input ${n}`]);
    expect((await readdir(runsDir)).filter((name) => name.includes(".tmp-"))).toEqual([]);
  });
});
