import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { RuntimeHealth } from "../../gen/worker_runtime/v1/backend_pb.js";
import { type RegisteredRuntime, RegisteredRuntimeSchema } from "../../gen/worker_runtime/v1/runtime_registry_pb.js";
import { type Worker, WorkerSchema } from "../../gen/worker_runtime/v1/worker_pb.js";
import { companionRuntime } from "../../web/src/companion-runtime.js";

/** Where the console's "New companion" puts its worker (the Chromium suite shows it end to end). */

function runtime(runtimeId: string, health: RuntimeHealth, { embedded = false, runs = true } = {}): RegisteredRuntime {
  return create(RegisteredRuntimeSchema, {
    runtimeId,
    health,
    embedded,
    summary: { runtimeId, capabilities: { executionAvailable: runs } },
  });
}

function workersOn(runtimeId: string, count: number): Worker[] {
  return Array.from({ length: count }, (_, i) => create(WorkerSchema, { ref: { runtimeId, workerId: `w-${runtimeId}-${i}` } }));
}

const EMBEDDED = runtime("backend-1", RuntimeHealth.READY, { embedded: true });
const EMBEDDED_WITHOUT_PROVIDER = runtime("backend-1", RuntimeHealth.READY, { embedded: true, runs: false });

describe("companionRuntime", () => {
  it("is the embedded runtime when it can run workers, even beside ready remote runtimes with fewer (SPEC §10)", () => {
    expect(companionRuntime([EMBEDDED], workersOn("backend-1", 3))).toBe("backend-1");
    expect(companionRuntime([runtime("rt-a", RuntimeHealth.READY), EMBEDDED], workersOn("backend-1", 5))).toBe("backend-1");
  });

  it("is a ready remote runtime that can run workers when the embedded one cannot (a replicated Backend)", () => {
    expect(companionRuntime([EMBEDDED_WITHOUT_PROVIDER, runtime("rt-a", RuntimeHealth.READY)], workersOn("rt-a", 5))).toBe("rt-a");
  });

  it("skips a remote runtime without a provider for one that has it", () => {
    const runtimes = [
      EMBEDDED_WITHOUT_PROVIDER,
      runtime("rt-a", RuntimeHealth.READY, { runs: false }),
      runtime("rt-b", RuntimeHealth.READY),
    ];
    expect(companionRuntime(runtimes, workersOn("rt-b", 4))).toBe("rt-b");
  });

  it("picks the ready remote runtime with the fewest listed workers, ties by list order", () => {
    const runtimes = [
      EMBEDDED_WITHOUT_PROVIDER,
      runtime("rt-a", RuntimeHealth.READY),
      runtime("rt-b", RuntimeHealth.READY),
      runtime("rt-c", RuntimeHealth.READY),
    ];
    expect(companionRuntime(runtimes, [...workersOn("rt-a", 2), ...workersOn("rt-b", 1), ...workersOn("rt-c", 3)])).toBe("rt-b");
    expect(companionRuntime(runtimes, [...workersOn("rt-a", 1), ...workersOn("rt-c", 1)])).toBe("rt-b");
    expect(companionRuntime(runtimes, [])).toBe("rt-a");
  });

  it("skips remote runtimes that are not ready, falling back to the embedded runtime so its refusal is seen", () => {
    const runtimes = [
      runtime("rt-a", RuntimeHealth.UNAVAILABLE),
      runtime("rt-b", RuntimeHealth.CONNECTING),
      runtime("rt-c", RuntimeHealth.UNAUTHENTICATED),
      runtime("rt-d", RuntimeHealth.INCOMPATIBLE),
      runtime("rt-e", RuntimeHealth.UNSPECIFIED),
      EMBEDDED_WITHOUT_PROVIDER,
    ];
    expect(companionRuntime(runtimes, [])).toBe("backend-1");
    expect(companionRuntime([...runtimes, runtime("rt-f", RuntimeHealth.READY)], workersOn("rt-f", 9))).toBe("rt-f");
    expect(companionRuntime([...runtimes, runtime("rt-f", RuntimeHealth.READY, { runs: false })], [])).toBe("backend-1");
  });

  it("is a ready remote runtime without a provider only when there is no embedded runtime at all", () => {
    expect(companionRuntime([runtime("rt-a", RuntimeHealth.READY, { runs: false })], [])).toBe("rt-a");
  });

  it("is undefined when the Backend lists no usable runtime", () => {
    expect(companionRuntime([], [])).toBeUndefined();
    expect(companionRuntime([runtime("rt-a", RuntimeHealth.UNAVAILABLE)], [])).toBeUndefined();
  });
});
