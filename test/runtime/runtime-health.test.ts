import { afterEach, describe, expect, it, vi } from "vitest";
import { RuntimeStatus } from "../../gen/worker_runtime/v1/runtime_pb.js";
import { Code } from "@connectrpc/connect";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { createMemoryStore, RuntimeError, silentLogger, StoreWriteError } from "../../src/runtime/index.js";
import { RuntimeHealth } from "../../src/runtime/runtime-health.js";

describe("RuntimeHealth's store probe", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  /** Health over a memory store whose probe writes are counted. */
  function healthWithCountedProbe(): { health: RuntimeHealth; probes: () => number } {
    const store = createMemoryStore();
    let probes = 0;
    store.probeWrite = async () => {
      probes++;
    };
    const health = new RuntimeHealth({ store, logger: silentLogger, probeIntervalMs: 1_000, addDiagnostic: () => {} });
    return { health, probes: () => probes };
  }

  it("probes while a write path fails, and the probe's success clears it", async () => {
    vi.useFakeTimers();
    const { health, probes } = healthWithCountedProbe();
    health.storeResult("worker w-1 runs", new Error("EIO"));
    expect(health.status).toBe(RuntimeStatus.DEGRADED);
    await vi.advanceTimersByTimeAsync(1_000);
    expect(probes()).toBe(1);
    expect(health.status).toBe(RuntimeStatus.SERVING);
  });

  it("over a store without a write probe, a request refused for a failed write degrades it and a later successful request clears it", () => {
    const health = new RuntimeHealth({ store: createMemoryStore(), logger: silentLogger, probeIntervalMs: 1_000, addDiagnostic: () => {} });
    const refused = new RuntimeError(Code.Unavailable, ErrorReason.STORE_UNAVAILABLE, "could not persist the request; retry later");
    refused.cause = new StoreWriteError("ENOSPC");
    health.requestSettled(refused);
    expect(health.status).toBe(RuntimeStatus.DEGRADED);
    // Nothing would ever probe this store: only a request that writes again can say so.
    health.requestSettled(undefined);
    expect(health.status).toBe(RuntimeStatus.SERVING);
    health.close();
  });

  it("stays DEGRADED while a store call has not answered, whatever the probe writes, until it answers", async () => {
    vi.useFakeTimers();
    const { health, probes } = healthWithCountedProbe();
    health.storeNotAnswering("worker:w-1:delete", "the store has not answered the delete of worker w-1");
    expect(health.status).toBe(RuntimeStatus.DEGRADED);
    await vi.advanceTimersByTimeAsync(2_000);
    expect(probes()).toBe(2);
    expect(health.status).toBe(RuntimeStatus.DEGRADED);
    health.storeAnswered("worker:w-1:delete");
    expect(health.status).toBe(RuntimeStatus.SERVING);
  });

  it("tells of a store call not answering once, however often it is met again", () => {
    const told: string[] = [];
    const health = new RuntimeHealth({
      store: createMemoryStore(),
      logger: silentLogger,
      probeIntervalMs: 60_000,
      addDiagnostic: (_severity, code) => told.push(code),
    });
    health.storeNotAnswering("worker:w-1:delete", "not answered");
    health.storeNotAnswering("worker:w-1:delete", "not answered");
    expect(told).toEqual(["store.not_answering"]);
    health.storeAnswered("worker:w-1:delete");
    expect(told).toEqual(["store.not_answering", "store.recovered"]);
    health.close();
  });

  it("starts no probe after close, when a write still fails (the store is closed: there is nothing left to probe)", async () => {
    vi.useFakeTimers();
    const { health, probes } = healthWithCountedProbe();
    health.close();
    health.storeResult("worker w-1 runs", new Error("the store is closed"));
    await vi.advanceTimersByTimeAsync(5_000);
    expect(probes()).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
  });
});
