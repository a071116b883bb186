import { describe, expect, expectTypeOf, it } from "vitest";
import { ErrorDetailSchema as GenErrorDetailSchema, ErrorReason as GenErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import type { WorkerEvent as GenWorkerEvent } from "../../gen/worker_runtime/v1/events_pb.js";
import { RunStatus as GenRunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import * as root from "../../src/index.js";
import * as core from "../../src/runtime/index.js";
import type {
  Run,
  RuntimeEvent,
  RuntimeSummary,
  WatchRuntimeResponse,
  WatchWorkerResponse,
  Worker,
  WorkerEvent,
} from "../../src/runtime/index.js";
import type { Runtime } from "../../src/runtime/index.js";

/**
 * What an embedder switches on and names comes from the package's entry
 * points, not from gen/…_pb.js paths the README never mentions. Found by an
 * audit embedding the Runtime: ErrorReason and the event and message types
 * were missing from `worker-runtime` and `worker-runtime/runtime`, and
 * HiddenPathError (which createRuntime throws) from the root.
 */
describe("the embedder's exports", () => {
  it.each([
    ["worker-runtime/runtime", core],
    ["worker-runtime", root],
  ] as const)("%s exports the typed error reasons and the enums an embedder switches on", (_entry, entry) => {
    expect(entry.ErrorReason).toBe(GenErrorReason);
    expect(entry.ErrorDetailSchema).toBe(GenErrorDetailSchema);
    expect(entry.RunStatus).toBe(GenRunStatus);
    for (const name of [
      "StopReason",
      "WorkerStatus",
      "RuntimeStatus",
      "ConnectivityState",
      "BusyPolicy",
      "ApprovalDecision",
      "DiagnosticSeverity",
    ]) {
      expect(entry, name).toHaveProperty(name);
      expect(typeof (entry as Record<string, unknown>)[name], name).toBe("object");
    }
    expect(entry.LimitsError).toBeTypeOf("function");
  });

  it("the root exports every error class createRuntime and the stores throw", () => {
    for (const name of [
      "HiddenPathError",
      "WorkspaceRootsError",
      "LimitsError",
      "DataDirInUseError",
      "DataDirNotDirectoryError",
      "DataDirNotWritableError",
      "DataDirFormatError",
      "OpenAIConfigError",
    ]) {
      expect((root as Record<string, unknown>)[name], name).toBeTypeOf("function");
    }
  });

  it("the message types are the ones the Runtime's methods hand out", () => {
    expectTypeOf<WorkerEvent>().toEqualTypeOf<GenWorkerEvent>();
    expectTypeOf<ReturnType<Runtime["getWorker"]>>().toEqualTypeOf<Worker>();
    expectTypeOf<ReturnType<Runtime["getRuntime"]>>().toEqualTypeOf<RuntimeSummary>();
    expectTypeOf<Awaited<ReturnType<Runtime["sendInput"]>>>().toEqualTypeOf<Run>();
    expectTypeOf<ReturnType<Runtime["watchWorker"]>>().toEqualTypeOf<AsyncGenerator<WatchWorkerResponse>>();
    expectTypeOf<ReturnType<Runtime["watchRuntime"]>>().toEqualTypeOf<AsyncGenerator<WatchRuntimeResponse>>();
    expectTypeOf<WatchRuntimeResponse["events"][number]>().toEqualTypeOf<RuntimeEvent>();
  });
});
