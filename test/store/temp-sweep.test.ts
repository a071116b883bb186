import { readdir, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { entries, openStore, tempDataDir, workerRecord } from "./fs-support.js";

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => ({ dir, cleanup } = await tempDataDir()));
afterEach(async () => cleanup());

/**
 * Snapshots and health probes are replaced atomically: a temp file, then a
 * rename. A crash between the two leaves the temp file, one per
 * interrupted write, and nothing else would ever remove it.
 */
describe("temp files left by interrupted writes", () => {
  it("are removed at open, in the data dir and in worker dirs, but not another process's lock attempt", async () => {
    const first = await openStore(dir);
    await first.store.putWorker(workerRecord("w1"));
    await first.store.appendTranscript("w1", entries(1, 1));
    await first.store.close();
    const workerDir = path.join(dir, "workers", "w1");
    const before = { root: await readdir(dir), worker: await readdir(workerDir) };
    await writeFile(path.join(dir, "runtime.snapshot.tmp-0123abcd"), "x");
    await writeFile(path.join(dir, "write.probe.tmp-89abcdef"), "x");
    await writeFile(path.join(dir, "LOCK.tmp-fedcba98"), "x");
    await writeFile(path.join(workerDir, "worker.snapshot.tmp-deadbeef"), "x");

    const reopened = await openStore(dir);
    expect(reopened.opened.workers.map((w) => w.record.worker.ref?.workerId)).toEqual(["w1"]);
    expect(reopened.opened.diagnostics).toEqual([]);
    expect((await readdir(workerDir)).sort()).toEqual([...before.worker].sort());
    // The reopened store holds LOCK (and LOCK.sock) as the first one did; the lock attempt's temp file stays.
    expect((await readdir(dir)).sort()).toEqual([...before.root, "LOCK", "LOCK.sock", "LOCK.tmp-fedcba98"].filter(unique).sort());
    await reopened.store.close();
  });
});

function unique(name: string, index: number, names: string[]): boolean {
  return names.indexOf(name) === index;
}
