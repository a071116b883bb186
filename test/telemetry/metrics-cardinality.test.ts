import { describe, expect, it } from "vitest";
import { PrometheusMetrics } from "../../src/telemetry/metrics/index.js";
import { parsePrometheusText, sumSamples } from "../support/prometheus-text.js";

/**
 * Label values a client can choose must not grow the scrape without bound.
 * The model of a provider call comes from the worker's profile, and profiles
 * come from config bundles any client with the token can push (up to 1000
 * bundles of 256 KiB): so past a fixed number of distinct models, or for an
 * absurdly long name, calls are counted under `_other` instead.
 */
describe("metric label cardinality", () => {
  it("counts calls to more distinct models than the bound, or with an absurd name, under _other", async () => {
    const metrics = new PrometheusMetrics();
    for (let i = 0; i < 500; i++)
      metrics.runtime.providerCalled({ model: `model-${i}`, durationSeconds: 0.1, inputTokens: 1, outputTokens: 2 });
    metrics.runtime.providerCalled({ model: "m".repeat(10_000), durationSeconds: 0.1 });
    const text = await metrics.registry.metrics();
    const families = parsePrometheusText(text);
    const models = new Set(
      (families.get("gen_ai_client_operation_duration_seconds")?.samples ?? []).map((sample) => sample.labels["gen_ai_request_model"]),
    );
    expect(models.size).toBeLessThanOrEqual(101);
    expect(models.has("model-0")).toBe(true);
    expect(models.has("_other")).toBe(true);
    expect([...models].every((model) => (model ?? "").length <= 128)).toBe(true);
    // Nothing is lost: every call is still counted.
    expect(sumSamples(families, "gen_ai_client_operation_duration_seconds_count")).toBe(501);
    expect(sumSamples(families, "gen_ai_client_token_usage_sum", { gen_ai_token_type: "output" })).toBe(1000);
  });
});
