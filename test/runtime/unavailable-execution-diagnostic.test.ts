import { afterEach, describe, expect, it } from "vitest";
import { DiagnosticSeverity } from "../../gen/worker_runtime/v1/runtime_pb.js";
import { createOpenAIBackend, NO_PROVIDER_REASON } from "../../src/engine/index.js";
import { type Harness, startHarness } from "../support/harness.js";

/**
 * A runtime that cannot run anything says so where an operator looks for
 * what is wrong (ListDiagnostics, SPEC §3: "provider misconfiguration"),
 * not only in GetRuntime's execution_unavailable_reason: `serve` without
 * OPENAI_API_KEY answered ListDiagnostics with nothing at all.
 */
let harness: Harness | undefined;
afterEach(async () => {
  await harness?.close();
  harness = undefined;
});

async function diagnosticsOf(h: Harness) {
  const { diagnostics } = await h.connect("grpc").management.listDiagnostics({});
  return diagnostics.map((d) => [d.severity, d.code, d.message]);
}

describe("a runtime whose execution backend cannot run", () => {
  it("holds a WARNING saying why, from start-up", async () => {
    harness = await startHarness({ executionBackend: createOpenAIBackend({}) });
    expect(await diagnosticsOf(harness)).toContainEqual([DiagnosticSeverity.WARNING, "execution.unavailable", NO_PROVIDER_REASON]);
  });

  it("holds none when the provider is configured", async () => {
    harness = await startHarness({ executionBackend: createOpenAIBackend({ apiKey: "sk-test", baseURL: "http://127.0.0.1:9/v1" }) });
    expect((await diagnosticsOf(harness)).map(([, code]) => code)).not.toContain("execution.unavailable");
  });
});
