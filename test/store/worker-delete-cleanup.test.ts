import { spawnSync } from "node:child_process";
import { readdir, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { entries, events, openStore, tempDataDir, workerRecord } from "./fs-support.js";

let dir: string;
let cleanup: () => Promise<void>;
const immutable: string[] = [];
beforeEach(async () => ({ dir, cleanup } = await tempDataDir()));
afterEach(async () => {
  for (const file of immutable.splice(0)) spawnSync("chattr", ["-i", file]);
  await cleanup();
});

/** Whether `chattr +i` works here (root on ext4, xfs...): it makes a file that rm cannot remove. */
function chattrWorks(): boolean {
  const probe = spawnSync("sh", ["-c", 'f=$(mktemp) && chattr +i "$f" && chattr -i "$f" && rm "$f"']);
  return probe.status === 0;
}

/**
 * A worker is deleted once its directory is renamed away durably; removing
 * its files afterwards is cleanup, which open repeats for leftovers. When
 * that cleanup failed (EBUSY, an NFS silly-renamed file, EIO) the delete
 * was reported failed although the worker was gone: a client retrying it
 * got NOT_FOUND.
 */
describe("deleting a worker whose files cannot all be removed", () => {
  it.runIf(chattrWorks())("succeeds, later opens start regardless, and one removes the leftovers once it can", async () => {
    const { store } = await openStore(dir);
    await store.putWorker(workerRecord("w1"));
    await store.appendTranscript("w1", entries(1, 1));
    const stuck = path.join(dir, "workers", "w1", "transcript", "stuck");
    await writeFile(stuck, "x");
    expect(spawnSync("chattr", ["+i", stuck]).status).toBe(0);

    await store.deleteWorker("w1");
    const [away] = (await readdir(path.join(dir, "workers"))).filter((name) => name.startsWith(".del-"));
    expect(away).toBeDefined();
    immutable.push(path.join(dir, "workers", away!, "transcript", "stuck"));
    await store.close();

    // Start-up does not depend on the cleanup either: the leftover is skipped while it cannot go.
    const stillStuck = await openStore(dir);
    expect(stillStuck.opened.workers).toEqual([]);
    expect(stillStuck.opened.diagnostics.map((d) => [d.code, d.message.includes(away!)])).toEqual([["store.cleanup_failed", true]]);
    await stillStuck.store.close();

    spawnSync("chattr", ["-i", immutable[0]!]);
    const reopened = await openStore(dir);
    expect(reopened.opened.workers).toEqual([]);
    expect(await readdir(path.join(dir, "workers"))).toEqual([]);
    await reopened.store.close();
  });
});

describe("a leftover temp file in a log dir that cannot be removed", () => {
  it.runIf(chattrWorks())("does not stop start-up", async () => {
    const first = await openStore(dir);
    await first.store.appendRuntimeEvents(events(1, 2));
    await first.store.close();
    // What an interrupted seal leaves: the index's temp file.
    const leftover = path.join(dir, "events", "00000000000000000001.idx.tmp-0badc0de");
    await writeFile(leftover, "x");
    expect(spawnSync("chattr", ["+i", leftover]).status).toBe(0);
    immutable.push(leftover);

    const reopened = await openStore(dir);
    expect(reopened.opened.lastRuntimeEventSeq).toBe(2n);
    await reopened.store.appendRuntimeEvents(events(3, 3));
    await reopened.store.close();
  });
});
