import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { RunSchema, RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { describeStoreFailure } from "../../src/runtime/store-health.js";
import { StoreWriteError } from "../../src/runtime/store.js";
import { UnsavedRuns } from "../../src/runtime/unsaved-runs.js";

const run = (status: RunStatus) => create(RunSchema, { runId: "r1", status });
const enospc = () =>
  new StoreWriteError("append to workers/w1/runs failed", {
    cause: Object.assign(new Error("no space left on device, write '/host/path'"), { code: "ENOSPC" }),
  });

describe("UnsavedRuns", () => {
  it("keeps the newest version whose write failed until a later write succeeds", async () => {
    const unsaved = new UnsavedRuns();
    await unsaved.track(run(RunStatus.RUNNING), Promise.resolve());
    expect(unsaved.get("r1")).toBeUndefined();
    await expect(unsaved.track(run(RunStatus.INTERRUPTED), Promise.reject(enospc()))).rejects.toBeInstanceOf(StoreWriteError);
    expect(unsaved.get("r1")?.status).toBe(RunStatus.INTERRUPTED);
    // An older write settling late does not hide the newer failed version.
    let settleOlder = (): void => {};
    const older = unsaved.track(run(RunStatus.QUEUED), new Promise<void>((resolve) => (settleOlder = resolve)));
    const newer = unsaved.track(run(RunStatus.FAILED), Promise.reject(enospc())).catch(() => {});
    await newer;
    settleOlder();
    await older;
    expect(unsaved.get("r1")?.status).toBe(RunStatus.FAILED);
    await unsaved.track(run(RunStatus.COMPLETED), Promise.resolve());
    expect(unsaved.get("r1")).toBeUndefined();
  });
});

describe("UnsavedRuns.retryable", () => {
  it("offers a failed version to write again only while no newer write of the run is in flight, and and not once a newer write succeeded", async () => {
    const unsaved = new UnsavedRuns();
    await unsaved.track(run(RunStatus.RUNNING), Promise.reject(enospc())).catch(() => {});
    expect(unsaved.retryable().map((r) => r.status)).toEqual([RunStatus.RUNNING]);
    // A newer write in flight settles the run either way: writing RUNNING after it would take the run backwards.
    let settle = (): void => {};
    const newer = unsaved.track(run(RunStatus.COMPLETED), new Promise<void>((resolve) => (settle = resolve)));
    expect(unsaved.retryable()).toEqual([]);
    settle();
    await newer;
    expect(unsaved.retryable()).toEqual([]);
    expect(unsaved.size).toBe(0);
  });
});

describe("describeStoreFailure", () => {
  it("names the system error code of the cause, never its message (host paths)", () => {
    expect(describeStoreFailure(enospc())).toBe("ENOSPC: no space left on device");
    expect(describeStoreFailure(new Error("plain"))).toBe("disk full or I/O error");
    expect(describeStoreFailure(enospc())).not.toContain("/host/path");
  });
});
