import { Code } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { DiagnosticSeverity, RuntimeStatus } from "../../gen/worker_runtime/v1/runtime_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { BusyPolicy } from "../../gen/worker_runtime/v1/common_pb.js";
import { WorkerStatus } from "../../gen/worker_runtime/v1/worker_pb.js";
import { expectReason } from "../support/errors.js";
import { useFullDisk } from "../support/full-disk-runtime.js";
import { type Clients, eventually } from "../support/harness.js";
import { replyChunks } from "../support/openai-chunks.js";

/**
 * The audit of store22: on a full disk with no run writing, every
 * CreateWorker, SendInput and StopWorker was refused STORE_UNAVAILABLE
 * ("could not persist the request; retry later") for seconds while
 * GetRuntime said SERVING and the health service kept the runtime in
 * rotation; only a failed event write made it DEGRADED. A refused request's
 * failed write counts as the store failing, with the event path's
 * diagnostic and recovery.
 */
const disk = useFullDisk("wr-full-requests-");

const requests: [string, (clients: Clients, worker: WorkerRef) => Promise<unknown>][] = [
  ["CreateWorker", (clients) => clients.catalog.createWorker({ runtimeId: "rf" })],
  ["SendInput", (clients, worker) => clients.interaction.sendInput({ worker, input: { text: "hello" } })],
  ["StopWorker", (clients, worker) => clients.catalog.stopWorker({ worker })],
];

async function health(clients: Clients, service: string): Promise<ServingStatus> {
  return (await clients.health.check({ service: `worker_runtime.v1.${service}` })).status;
}

describe.each(requests)("%s refused because the disk is full", (_name, request) => {
  it("makes the runtime DEGRADED with a store.write_failed diagnostic and its health NOT_SERVING, until the disk writes again", async () => {
    const { harness, clients } = await disk.serve();
    try {
      const worker = (await clients.catalog.createWorker({ runtimeId: "rf" })).worker?.ref as WorkerRef;
      expect((await clients.management.getRuntime({})).runtime?.status).toBe(RuntimeStatus.SERVING);

      disk.full = "ENOSPC";
      await expectReason(() => request(clients, worker), Code.Unavailable, ErrorReason.STORE_UNAVAILABLE);
      // Told as the refusal is: a probe must not route a retry to this runtime meanwhile.
      expect((await clients.management.getRuntime({})).runtime?.status).toBe(RuntimeStatus.DEGRADED);
      expect(await health(clients, "WorkerCatalog")).toBe(ServingStatus.NOT_SERVING);
      expect(await health(clients, "WorkerInteraction")).toBe(ServingStatus.NOT_SERVING);
      const { diagnostics } = await clients.management.listDiagnostics({ minSeverity: DiagnosticSeverity.ERROR });
      expect(diagnostics.find((d) => d.code === "store.write_failed")?.message).toContain("ENOSPC");

      disk.full = undefined;
      await eventually(async () => (await clients.management.getRuntime({})).runtime?.status === RuntimeStatus.SERVING);
      expect(await health(clients, "WorkerCatalog")).toBe(ServingStatus.SERVING);
      expect(await health(clients, "WorkerInteraction")).toBe(ServingStatus.SERVING);
      expect((await clients.catalog.createWorker({ runtimeId: "rf" })).worker?.ref?.workerId).toBeTruthy();
    } finally {
      await harness.close();
    }
  });
});

describe("StopWorker refused because the disk is full", () => {
  it("is refused again while the disk is full, and stops the worker when retried once it writes again", async () => {
    const { harness, clients } = await disk.serve();
    try {
      const worker = (await clients.catalog.createWorker({ runtimeId: "rf" })).worker?.ref as WorkerRef;
      disk.full = "ENOSPC";
      await expectReason(() => clients.catalog.stopWorker({ worker }), Code.Unavailable, ErrorReason.STORE_UNAVAILABLE);
      // Not answered "stopped" from memory while the store has not taken it: the caller was told to retry.
      await expectReason(() => clients.catalog.stopWorker({ worker }), Code.Unavailable, ErrorReason.STORE_UNAVAILABLE);

      disk.full = undefined;
      await eventually(async () => (await clients.management.getRuntime({})).runtime?.status === RuntimeStatus.SERVING);
      // The retry the refusal asked for: it was answered from the first attempt's refusal for ever.
      await clients.catalog.stopWorker({ worker });
      expect((await clients.catalog.getWorker({ worker })).worker?.status).toBe(WorkerStatus.STOPPED);
    } finally {
      await harness.close();
    }
  });
});

describe("StopWorker refused because the disk is full while a run streams and two wait", () => {
  // The first stop's write of the queued run's end failed, and the stop's retry, which only wrote the STOPPED worker
  // again, never cancelled anything: the active run kept streaming on a STOPPED worker, and the queued runs after
  // the one whose end failed, already taken off the queue, stayed QUEUED for ever.
  it("cancels every run when retried once the disk writes again", async () => {
    const { harness, clients } = await disk.serve();
    try {
      const worker = (await clients.catalog.createWorker({ runtimeId: "rf" })).worker?.ref as WorkerRef;
      disk.fake.enqueue({ kind: "stream", chunks: replyChunks({ text: "partial" }).slice(0, 1), end: "hang" });
      const active = (await clients.interaction.sendInput({ worker, input: { text: "first" } })).run?.runId ?? "";
      await disk.fake.waitForRequests(1);
      const queued: string[] = [];
      for (const text of ["later", "later still"])
        queued.push((await clients.interaction.sendInput({ worker, input: { text }, busyPolicy: BusyPolicy.ENQUEUE })).run?.runId ?? "");

      disk.full = "ENOSPC";
      await expectReason(() => clients.catalog.stopWorker({ worker }), Code.Unavailable, ErrorReason.STORE_UNAVAILABLE);
      disk.full = undefined;
      await eventually(async () => (await clients.management.getRuntime({})).runtime?.status === RuntimeStatus.SERVING);
      await clients.catalog.stopWorker({ worker });

      await disk.fake.waitForClientClose(0);
      await eventually(async () => (await clients.interaction.getRun({ worker, runId: active })).run?.status === RunStatus.CANCELLED);
      for (const runId of queued)
        expect((await clients.interaction.getRun({ worker, runId })).run?.status, runId).toBe(RunStatus.CANCELLED);
      expect((await clients.catalog.getWorker({ worker })).worker?.status).toBe(WorkerStatus.STOPPED);
    } finally {
      await harness.close();
    }
  });
});
