import { afterEach, describe, expect, it } from "vitest";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { RunStatus, StopReason } from "../../gen/worker_runtime/v1/run_pb.js";
import { runToEnd, startHarness, type Harness } from "../support/harness.js";
import { ScriptedBackend } from "../support/scripted-backend.js";
import type { RetryInit } from "../../src/runtime/index.js";
import { MAX_RUN_ERROR_MESSAGE_BYTES } from "../../src/runtime/limits.js";

/**
 * A retry's counts are uint32 on the wire, but an execution backend (an
 * embedder's own) hands the core plain numbers. One outside uint32 (a
 * fraction, a negative, past 2^32 - 1) used to be kept on the run as it
 * was, and the run failed (its retry event could not be encoded) although the
 * backend completed it with an answer. The core keeps each one
 * within uint32, whole: fractions round up (a delay is never shortened),
 * negatives become 0 and the rest stops at the top.
 */

const UINT32_MAX = 2 ** 32 - 1;

let harness: Harness | undefined;

afterEach(async () => {
  await harness?.close();
  harness = undefined;
});

/** Runs one input to its end on a backend that reports `retry` once and then answers; returns the run and the clients. */
async function runWithRetry(retry: RetryInit) {
  const backend = new ScriptedBackend(async (_request, sink) => {
    sink.retry(retry);
    sink.textDelta("b1", "fine");
    await sink.commit({ case: "assistantMessage", value: { $typeName: "worker_runtime.v1.AssistantMessage", text: "fine" } }, "b1");
    return { kind: "completed", stopReason: StopReason.END_TURN };
  });
  harness = await startHarness({ executionBackend: backend });
  const clients = harness.connect("grpc");
  const worker = (await clients.catalog.createWorker({ runtimeId: harness.runtime.runtimeId })).worker?.ref as WorkerRef;
  const ended = await runToEnd(clients, worker, "hi");
  expect(ended?.status).toBe(RunStatus.COMPLETED);
  return { ended, clients, worker };
}

describe("a backend's retry with values outside uint32", () => {
  it("is kept within uint32: the run completes and reads back, and so does its worker", async () => {
    const { ended, clients, worker } = await runWithRetry({
      attempt: 1.5,
      delayMs: -20,
      reason: "overloaded",
      httpStatus: 2 ** 40,
      budgetRemainingMs: Number.NaN,
    });
    expect(ended?.retries).toBe(1);
    expect(ended?.lastRetry).toMatchObject({ attempt: 2, delayMs: 0, httpStatus: UINT32_MAX, budgetRemainingMs: 0, reason: "overloaded" });
    expect((await clients.catalog.getWorker({ worker })).worker?.ref?.workerId).toBe(worker.workerId);
  });

  it("has its reason cut to the bound a run's error message has, on a character boundary", async () => {
    const reason = `${"é".repeat(50_000)}!`;
    const { ended } = await runWithRetry({ attempt: 1, delayMs: 10, reason, budgetRemainingMs: 100 });
    const kept = ended?.lastRetry?.reason ?? "";
    expect(Buffer.byteLength(kept, "utf8")).toBeLessThanOrEqual(MAX_RUN_ERROR_MESSAGE_BYTES);
    expect(kept.length).toBeGreaterThan(500);
    expect(reason.startsWith(kept)).toBe(true);
  });
});
