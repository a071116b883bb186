import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { StoreWriteError } from "../../src/runtime/store.js";
import type { FileStoreFaults } from "../../src/store/fs/index.js";
import { eventText, events, NO_REQUEST, openStore, run, tempDataDir, workerRecord } from "./fs-support.js";

/**
 * The runtime-wide event log and the worker writes its events describe
 * (RunChanged right after putRun, WorkerUpdated right after putWorker, issued
 * side by side by the core). Found by the SIGKILL crash test: a RunChanged
 * runtime event was durable and delivered while the run it announced was
 * still queued behind a fsync of the worker's run log, so a kill at that
 * moment left a watcher holding a run that the restarted runtime never had.
 */
let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => ({ dir, cleanup } = await tempDataDir()));
afterEach(async () => cleanup());

describe("runtime events and the worker writes they describe", () => {
  it("writes a runtime event only after a run write issued before it is durable", async () => {
    const syncs: string[] = [];
    const faults: FileStoreFaults = { beforeSync: (file) => void syncs.push(file) };
    const { store } = await openStore(dir, { faults });
    await store.putWorker(workerRecord("w1"));
    syncs.length = 0;

    // The run log is busy with r1 when r2 is put, so r2 waits for the next group commit,
    // while the runtime-wide log is idle and could write at once.
    const first = store.putRun("w1", run("r1", RunStatus.QUEUED), NO_REQUEST);
    const second = store.putRun("w1", run("r2", RunStatus.QUEUED), NO_REQUEST);
    let runsDurableAtAck: number | undefined;
    const announced = store.appendRuntimeEvents(events(1, 1)).then(() => {
      runsDurableAtAck = syncs.filter((file) => file.includes("/runs/")).length;
    });
    await Promise.all([first, second, announced]);

    const runSyncs = syncs.filter((file) => file.includes("/runs/")).length;
    // The runtime-wide log lives in events/ at the top of the data dir.
    const firstRuntimeSync = syncs.findIndex((file) => file.startsWith("events"));
    expect(firstRuntimeSync).toBeGreaterThan(0);
    const runSyncsBefore = syncs.slice(0, firstRuntimeSync).filter((file) => file.includes("/runs/")).length;
    // Both run writes (however they were grouped) were synced before the runtime event was written.
    expect(runSyncsBefore).toBe(runSyncs);
    expect(runsDurableAtAck).toBe(runSyncs);
    await store.close();
  });

  it.each([
    ["run", /runs\//],
    ["snapshot", /worker\.snapshot/],
  ])("refuses a runtime event issued right after a %s write that then fails, without writing it", async (kind, match) => {
    let on = false;
    const fail = (file: string): void => {
      if (on && match.test(file)) throw Object.assign(new Error("input/output error"), { code: "EIO" });
    };
    const { store } = await openStore(dir, { faults: { beforeWrite: fail } });
    await store.putWorker(workerRecord("w1"));
    await store.appendRuntimeEvents(events(1, 2));

    on = true;
    const sibling =
      kind === "run" ? store.putRun("w1", run("r1", RunStatus.QUEUED), NO_REQUEST) : store.putWorker(workerRecord("w1", "renamed"));
    const announced = store.appendRuntimeEvents(events(3, 3));
    await expect(sibling).rejects.toBeInstanceOf(StoreWriteError);
    await expect(announced).rejects.toBeInstanceOf(StoreWriteError);
    on = false;

    // The log is usable again from the same seq, and the refused event was never written.
    await store.appendRuntimeEvents([{ seq: 3n, bytes: Buffer.from("retried-3") }]);
    await store.close();
    const { store: reopened, opened } = await openStore(dir);
    expect(opened.lastRuntimeEventSeq).toBe(3n);
    expect((await reopened.readRuntimeEvents(0n, 10)).map(eventText)).toEqual(["event-1", "event-2", "retried-3"]);
    await reopened.close();
  });

  it("does not hold a runtime event back for an idle worker or a deleted one", async () => {
    const { store } = await openStore(dir);
    await store.putWorker(workerRecord("w1"));
    await store.putWorker(workerRecord("w2"));
    await store.putRun("w1", run("r1", RunStatus.COMPLETED), NO_REQUEST);
    await store.deleteWorker("w2");
    await store.appendRuntimeEvents(events(1, 3));
    expect((await store.readRuntimeEvents(0n, 10)).map(eventText)).toEqual(["event-1", "event-2", "event-3"]);
    await store.close();
  });
});
