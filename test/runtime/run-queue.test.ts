import { create } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { BusyPolicy } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { RunSchema } from "../../gen/worker_runtime/v1/run_pb.js";
import { ConnectivityState, WorkerSchema, WorkerStatus } from "../../gen/worker_runtime/v1/worker_pb.js";
import { RuntimeError } from "../../src/runtime/errors.js";
import { admit, checkAcceptsInput, RunQueue } from "../../src/runtime/run-queue.js";

const run = (runId: string) => create(RunSchema, { runId });
const idle = { queued: 0, interrupting: 0 };

/** The typed error `call` throws. */
function thrown(call: () => unknown): RuntimeError {
  try {
    call();
  } catch (error) {
    if (error instanceof RuntimeError) return error;
    throw error;
  }
  throw new Error("expected a RuntimeError");
}

describe("the busy policy", () => {
  it("starts input at once on an idle worker, whatever the policy", () => {
    for (const policy of [BusyPolicy.UNSPECIFIED, BusyPolicy.REJECT, BusyPolicy.ENQUEUE, BusyPolicy.INTERRUPT]) {
      expect(admit(policy, undefined, idle, 16, "w1")).toEqual({ kind: "start" });
    }
  });

  it("refuses input on a busy worker under REJECT and UNSPECIFIED, naming the active run", () => {
    for (const policy of [BusyPolicy.UNSPECIFIED, BusyPolicy.REJECT]) {
      const error = thrown(() => admit(policy, "r1", idle, 16, "w1"));
      expect([error.code, error.reason]).toEqual([Code.FailedPrecondition, ErrorReason.WORKER_BUSY]);
      expect(error.metadata).toEqual({ active_run_id: "r1" });
    }
  });

  it("queues under ENQUEUE and interrupts the active run under INTERRUPT", () => {
    expect(admit(BusyPolicy.ENQUEUE, "r1", { queued: 3, interrupting: 0 }, 16, "w1")).toEqual({ kind: "enqueue" });
    expect(admit(BusyPolicy.INTERRUPT, "r1", { queued: 3, interrupting: 0 }, 16, "w1")).toEqual({ kind: "interrupt", activeRunId: "r1" });
  });

  it("refuses ENQUEUE with QUEUE_FULL at the queue bound, counting every waiting run", () => {
    const error = thrown(() => admit(BusyPolicy.ENQUEUE, "r1", { queued: 16, interrupting: 2 }, 16, "w1"));
    expect([error.code, error.reason, error.message]).toEqual([
      Code.ResourceExhausted,
      ErrorReason.QUEUE_FULL,
      "worker w1 already has 16 queued inputs",
    ]);
    expect(error.metadata).toEqual({ max_queue_depth: "16" });
    expect(admit(BusyPolicy.ENQUEUE, "r1", { queued: 15, interrupting: 0 }, 16, "w1").kind).toBe("enqueue");
  });

  it("takes INTERRUPT past a full queue of ENQUEUE'd inputs, bounding the interrupting ones among themselves", () => {
    expect(admit(BusyPolicy.INTERRUPT, "r1", { queued: 16, interrupting: 0 }, 16, "w1").kind).toBe("interrupt");
    expect(admit(BusyPolicy.INTERRUPT, "r1", { queued: 31, interrupting: 15 }, 16, "w1").kind).toBe("interrupt");
    const error = thrown(() => admit(BusyPolicy.INTERRUPT, "r1", { queued: 16, interrupting: 16 }, 16, "w1"));
    expect([error.code, error.reason, error.message]).toEqual([
      Code.ResourceExhausted,
      ErrorReason.QUEUE_FULL,
      "worker w1 already has 16 interrupting inputs waiting",
    ]);
    expect(error.metadata).toEqual({ max_queue_depth: "16" });
  });
});

describe("who takes input", () => {
  const worker = (status: WorkerStatus, state = ConnectivityState.CONNECTED, reason = "") =>
    create(WorkerSchema, { ref: { runtimeId: "rt", workerId: "w1" }, status, connectivity: { state, reason }, failureMessage: "disk" });

  it("an idle or running connected worker with a backend", () => {
    expect(() => checkAcceptsInput(worker(WorkerStatus.IDLE), true)).not.toThrow();
    expect(() => checkAcceptsInput(worker(WorkerStatus.RUNNING), true)).not.toThrow();
  });

  it("not a failed, stopped or disconnected worker, each with its reason", () => {
    expect(thrown(() => checkAcceptsInput(worker(WorkerStatus.FAILED), true)).reason).toBe(ErrorReason.WORKER_FAILED);
    expect(thrown(() => checkAcceptsInput(worker(WorkerStatus.STOPPED), true)).reason).toBe(ErrorReason.WORKER_STOPPED);
    const offline = thrown(() => checkAcceptsInput(worker(WorkerStatus.IDLE, ConnectivityState.NOT_CONNECTED, "no key"), true));
    expect([offline.reason, offline.metadata]).toEqual([ErrorReason.WORKER_NOT_CONNECTED, { reason: "no key" }]);
    const noBackend = thrown(() => checkAcceptsInput(worker(WorkerStatus.IDLE), false));
    expect(noBackend.reason).toBe(ErrorReason.WORKER_NOT_CONNECTED);
  });
});

describe("the run queue", () => {
  it("starts interrupting runs first, FIFO among themselves, then queued ones FIFO", () => {
    const queue = new RunQueue();
    queue.add(run("e1"), false);
    queue.add(run("i1"), true);
    queue.add(run("e2"), false);
    queue.add(run("i2"), true);
    expect(queue.items.map((r) => r.runId)).toEqual(["i1", "i2", "e1", "e2"]);
    expect(queue.next()?.runId).toBe("i1");
    // i2 is still ahead of the queued ones: a new interrupt goes behind it.
    queue.add(run("i3"), true);
    expect(queue.items.map((r) => r.runId)).toEqual(["i2", "i3", "e1", "e2"]);
  });

  it("keeps the interrupt boundary when a run is removed from either side", () => {
    const queue = new RunQueue();
    queue.add(run("e1"), false);
    queue.add(run("i1"), true);
    queue.add(run("i2"), true);
    expect(queue.remove("i1")?.runId).toBe("i1");
    expect(queue.remove("nope")).toBeUndefined();
    queue.add(run("i3"), true);
    expect(queue.items.map((r) => r.runId)).toEqual(["i2", "i3", "e1"]);
    queue.remove("e1");
    queue.add(run("i4"), true);
    queue.add(run("e2"), false);
    expect(queue.items.map((r) => r.runId)).toEqual(["i2", "i3", "i4", "e2"]);
  });

  it("clears everything, after which interrupts start from the head again", () => {
    const queue = new RunQueue();
    queue.add(run("i1"), true);
    queue.add(run("e1"), false);
    expect(queue.clear().map((r) => r.runId)).toEqual(["i1", "e1"]);
    expect(queue.length).toBe(0);
    queue.add(run("e2"), false);
    queue.add(run("i2"), true);
    expect(queue.items.map((r) => r.runId)).toEqual(["i2", "e2"]);
    expect(queue.find("e2")?.runId).toBe("e2");
  });
});
