import { tmpdir } from "node:os";
import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { PutConfigBundleRequestSchema } from "../../gen/worker_runtime/v1/runtime_management_pb.js";
import { CreateWorkerRequestSchema } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { createRuntime, RuntimeError } from "../../src/runtime/index.js";
import { ScriptedBackend } from "../support/scripted-backend.js";
import { bundleOf } from "../support/bundles.js";

/**
 * An execution backend written against the older `missingPrograms` (before
 * `programProblems`) keeps its programs checked at CreateWorker.
 */
class OlderBackend extends ScriptedBackend {
  missingPrograms(programs: readonly string[]): string[] {
    return programs.filter((program) => program === "absent-tool");
  }
}

describe("an execution backend with only missingPrograms", () => {
  it("has CreateWorker refuse a bundle's allowed program it lacks, as not installed", async () => {
    const runtime = await createRuntime({ executionBackend: new OlderBackend(), workspaceRoots: { main: tmpdir() } });
    try {
      const bundle = bundleOf({
        bundleId: "team",
        profiles: [{ name: "coder", model: "m", tools: ["run_command"] }],
        policies: {
          allowedCapabilities: ["shell.exec"],
          allowedWorkspaceRoots: ["main"],
          shell: { allowedPrograms: ["echo", "absent-tool"] },
        },
      });
      await runtime.putConfigBundle(create(PutConfigBundleRequestSchema, { bundle }));
      const request = create(CreateWorkerRequestSchema, {
        runtimeId: runtime.runtimeId,
        profile: { source: { case: "bundle", value: { bundleId: "team", digest: bundle.digest, profile: "coder" } } },
        capabilities: ["shell.exec"],
        workspace: { root: "main" },
      });
      const refused = await runtime.createWorker(request).catch((error: unknown) => error);
      expect(refused).toBeInstanceOf(RuntimeError);
      expect(refused).toMatchObject({
        reason: ErrorReason.PROGRAM_NOT_FOUND,
        metadata: { program: "absent-tool", cause: "not_installed" },
      });
    } finally {
      await runtime.close();
    }
  });
});
