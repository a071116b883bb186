import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { RuntimeHealth } from "../../gen/worker_runtime/v1/backend_pb.js";
import { type RegisteredRuntime, RegisteredRuntimeSchema } from "../../gen/worker_runtime/v1/runtime_registry_pb.js";
import { type Worker, WorkerSchema } from "../../gen/worker_runtime/v1/worker_pb.js";
import { companionRuntime } from "../../web/src/companion-runtime.js";

/** Where the console's "New companion" puts its worker (the Chromium suite shows it end to end). */

function runtime(runtimeId: string, health: RuntimeHealth, embedded = false): RegisteredRuntime {
  return create(RegisteredRuntimeSchema, { runtimeId, health, embedded });
}

function workersOn(runtimeId: string, count: number): Worker[] {
  return Array.from({ length: count }, (_, i) => create(WorkerSchema, { ref: { runtimeId, workerId: `w-${runtimeId}-${i}` } }));
}

const EMBEDDED = runtime("backend-1", RuntimeHealth.READY, true);

describe("companionRuntime", () => {
  it("is the embedded runtime when no remote runtime is listed (npm start alone)", () => {
    expect(companionRuntime([EMBEDDED], workersOn("backend-1", 3))).toBe("backend-1");
  });

  it("prefers a ready remote runtime over the embedded one, even one with more workers", () => {
    expect(companionRuntime([EMBEDDED, runtime("rt-a", RuntimeHealth.READY)], workersOn("rt-a", 5))).toBe("rt-a");
  });

  it("picks the ready remote runtime with the fewest listed workers", () => {
    const runtimes = [
      EMBEDDED,
      runtime("rt-a", RuntimeHealth.READY),
      runtime("rt-b", RuntimeHealth.READY),
      runtime("rt-c", RuntimeHealth.READY),
    ];
    expect(companionRuntime(runtimes, [...workersOn("rt-a", 2), ...workersOn("rt-b", 1), ...workersOn("rt-c", 3)])).toBe("rt-b");
  });

  it("breaks ties by list order", () => {
    const runtimes = [EMBEDDED, runtime("rt-b", RuntimeHealth.READY), runtime("rt-a", RuntimeHealth.READY)];
    expect(companionRuntime(runtimes, [...workersOn("rt-a", 1), ...workersOn("rt-b", 1)])).toBe("rt-b");
    expect(companionRuntime(runtimes, [])).toBe("rt-b");
  });

  it("skips remote runtimes that are not ready, falling back to the embedded runtime", () => {
    const runtimes = [
      runtime("rt-a", RuntimeHealth.UNAVAILABLE),
      runtime("rt-b", RuntimeHealth.CONNECTING),
      runtime("rt-c", RuntimeHealth.UNAUTHENTICATED),
      runtime("rt-d", RuntimeHealth.INCOMPATIBLE),
      runtime("rt-e", RuntimeHealth.UNSPECIFIED),
      EMBEDDED,
    ];
    expect(companionRuntime(runtimes, [])).toBe("backend-1");
    expect(companionRuntime([...runtimes, runtime("rt-f", RuntimeHealth.READY)], workersOn("rt-f", 9))).toBe("rt-f");
  });

  it("is undefined when the Backend lists no usable runtime", () => {
    expect(companionRuntime([], [])).toBeUndefined();
    expect(companionRuntime([runtime("rt-a", RuntimeHealth.UNAVAILABLE)], [])).toBeUndefined();
  });
});
