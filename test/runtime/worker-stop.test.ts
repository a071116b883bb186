import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { WorkerSchema, WorkerStatus } from "../../gen/worker_runtime/v1/worker_pb.js";
import { WorkerStop } from "../../src/runtime/worker-stop.js";

/** A stop whose steps fail as a test says: counts how often each ran. */
function stopWith(failures: { cancel?: number; save?: number }) {
  const worker = create(WorkerSchema, { status: WorkerStatus.RUNNING });
  const calls = { cancel: 0, save: 0 };
  const stop = new WorkerStop(
    worker,
    async () => {
      calls.cancel += 1;
      if (calls.cancel <= (failures.cancel ?? 0)) throw new Error("a run's end could not be written");
    },
    {
      saveWorker: async () => {
        calls.save += 1;
        if (calls.save <= (failures.save ?? 0)) throw new Error("the worker could not be written");
      },
    },
  );
  return { worker, calls, stop };
}

describe("WorkerStop", () => {
  it("cancels once and saves once; a second stop is answered by the first", async () => {
    const { worker, calls, stop } = stopWith({});
    await Promise.all([stop.stop(), stop.stop()]);
    await stop.stop();
    expect(worker.status).toBe(WorkerStatus.STOPPED);
    expect(calls).toEqual({ cancel: 1, save: 1 });
  });

  it("cancels again on the retry when the first cancelling failed (the runs were not all ended)", async () => {
    const { worker, calls, stop } = stopWith({ cancel: 1 });
    await expect(stop.stop()).rejects.toThrow(/could not be written/);
    expect(worker.status).toBe(WorkerStatus.STOPPED);
    await stop.stop();
    expect(calls).toEqual({ cancel: 2, save: 1 });
  });

  it("only saves again on the retry when the cancelling succeeded and the save failed", async () => {
    const { calls, stop } = stopWith({ save: 1 });
    await expect(stop.stop()).rejects.toThrow(/could not be written/);
    await stop.stop();
    expect(calls).toEqual({ cancel: 1, save: 2 });
    await stop.stop();
    expect(calls).toEqual({ cancel: 1, save: 2 });
  });

  it("leaves a FAILED worker as it is", async () => {
    const { worker, calls, stop } = stopWith({});
    worker.status = WorkerStatus.FAILED;
    await stop.stop();
    expect(worker.status).toBe(WorkerStatus.FAILED);
    expect(calls).toEqual({ cancel: 0, save: 0 });
  });
});
