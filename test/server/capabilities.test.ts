import { describe, expect, it } from "vitest";
import { createOpenAIBackend, openAIBackendOptionsFromEnv } from "../../src/engine/index.js";
import { startHarness } from "../support/harness.js";

/**
 * GetRuntime.capabilities.execution_backend is documented as empty when no
 * backend is configured: a runtime without a provider key must not claim
 * "openai" while it refuses every input as not connected.
 */
describe("GetRuntime capabilities", () => {
  it("names no execution backend while no provider is configured", async () => {
    const harness = await startHarness({ executionBackend: createOpenAIBackend(openAIBackendOptionsFromEnv({})) });
    try {
      const capabilities = (await harness.connect("grpc").management.getRuntime({})).runtime?.capabilities;
      expect(capabilities?.executionAvailable).toBe(false);
      expect(capabilities?.executionUnavailableReason).toContain("OPENAI_API_KEY");
      expect(capabilities?.executionBackend).toBe("");
    } finally {
      await harness.close();
    }
  });

  it("names the backend once a provider is configured", async () => {
    const backend = createOpenAIBackend(openAIBackendOptionsFromEnv({ OPENAI_API_KEY: "sk-test", OPENAI_BASE_URL: "http://127.0.0.1:9" }));
    const harness = await startHarness({ executionBackend: backend });
    try {
      const capabilities = (await harness.connect("connect").management.getRuntime({})).runtime?.capabilities;
      expect(capabilities?.executionAvailable).toBe(true);
      expect(capabilities?.executionBackend).toBe("openai");
    } finally {
      await harness.close();
    }
  });
});
