import { create } from "@bufbuild/protobuf";
import { mkdir, readdir } from "node:fs/promises";
import * as path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ConfigBundleSchema } from "../../gen/worker_runtime/v1/profile_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { StoreWriteError } from "../../src/runtime/store.js";
import { entries, events, NO_REQUEST, openStore, run, tempDataDir, workerRecord } from "./fs-support.js";

let dir: string;
let cleanup: () => Promise<void>;
beforeEach(async () => ({ dir, cleanup } = await tempDataDir()));
afterEach(async () => cleanup());

/** Every name under the data dir, recursively, sorted. */
async function tree(): Promise<string[]> {
  return (await readdir(dir, { recursive: true })).sort();
}

describe("file store close", () => {
  it("refuses every write after close, and writes nothing into the data dir it no longer locks", async () => {
    const { store } = await openStore(dir);
    await store.putWorker(workerRecord("w1"));
    await store.close();
    const before = await tree();
    expect(before).not.toContain("LOCK");

    const writes: Array<[string, () => Promise<unknown>]> = [
      ["putWorker (new)", () => store.putWorker(workerRecord("w2"))],
      ["putWorker (existing)", () => store.putWorker(workerRecord("w1", "renamed"))],
      ["appendEvents", () => store.appendEvents("w1", events(1, 1))],
      ["appendTranscript", () => store.appendTranscript("w1", entries(1, 1))],
      ["putRun", () => store.putRun("w1", run("r1", RunStatus.RUNNING), NO_REQUEST)],
      ["appendRuntimeEvents", () => store.appendRuntimeEvents(events(1, 1))],
      ["putConfigBundle", () => store.putConfigBundle(create(ConfigBundleSchema, { bundleId: "b1" }))],
      ["probeWrite", () => store.probeWrite?.() ?? Promise.resolve()],
      ["deleteWorker", () => store.deleteWorker("w1")],
    ];
    for (const [name, write] of writes) {
      const outcome = await write().then(
        () => "resolved",
        (error: unknown) => error,
      );
      expect(outcome, name).toBeInstanceOf(StoreWriteError);
    }
    expect(await tree()).toEqual(before);
  });

  it("waits for probe and config bundle writes in flight, so the data dir can be removed once it resolves", async () => {
    const { store } = await openStore(dir);
    const settled: string[] = [];
    const probe = store.probeWrite?.().finally(() => settled.push("probe"));
    const bundle = store.putConfigBundle(create(ConfigBundleSchema, { bundleId: "b1" })).finally(() => settled.push("bundle"));
    await store.close();
    expect(settled.sort()).toEqual(["bundle", "probe"]);
    await Promise.all([probe, bundle]);
    // Nothing was left half-written: no probe file, no temp file.
    expect((await tree()).filter((name) => /probe|\.tmp-/.test(path.basename(name)))).toEqual([]);
  });

  it("close is idempotent: a second close waits for the first and does not fail", async () => {
    const { store } = await openStore(dir);
    const appended = store.appendRuntimeEvents(events(1, 3));
    await Promise.all([store.close(), store.close()]);
    await appended;
    const again = await openStore(dir);
    expect(again.opened.lastRuntimeEventSeq).toBe(3n);
    await again.store.close();
  });
});

describe("file store temp files", () => {
  it("removes a snapshot's temp file when its rename fails (the probe would leave one at every try)", async () => {
    const { store } = await openStore(dir);
    // A directory where the probe's file goes makes its rename fail, as EIO or ENOSPC on rename would.
    await mkdir(path.join(dir, "write.probe", "occupied"), { recursive: true });
    for (let i = 0; i < 3; i++) await expect(store.probeWrite?.()).rejects.toBeInstanceOf(StoreWriteError);
    expect((await readdir(dir)).filter((name) => name.includes(".tmp-"))).toEqual([]);
    await store.close();
  });
});
