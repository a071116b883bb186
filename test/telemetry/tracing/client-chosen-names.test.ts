import { InMemorySpanExporter, SimpleSpanProcessor } from "@opentelemetry/sdk-trace-base";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RunStatus } from "../../../gen/worker_runtime/v1/run_pb.js";
import { createOpenAIBackend } from "../../../src/engine/index.js";
import { type InstalledTracing, installTracing } from "../../../src/telemetry/tracing/tracing-sdk.js";
import { type FakeOpenAI, startFakeOpenAI } from "../../support/fake-openai.js";
import { eventually, type Harness, startHarness } from "../../support/harness.js";
import { reply } from "../../support/openai-chunks.js";
import { bundleOf } from "../../support/bundles.js";

/**
 * Span names and attributes a client can choose stay bounded. A profile's
 * model comes from config bundles that any client with the token
 * can push (a bundle may be 256 KiB), unchecked in length, and it names
 * the `chat` span of every turn (profile names are checked: 1-64 chars).
 */

const LONG = "m".repeat(50_000);

let memory: InMemorySpanExporter;
let tracing: InstalledTracing;
let fake: FakeOpenAI;
let h: Harness;

beforeAll(async () => {
  memory = new InMemorySpanExporter();
  tracing = installTracing({ serviceName: "client-chosen-names-test", spanProcessors: [new SimpleSpanProcessor(memory)] });
  fake = await startFakeOpenAI();
  h = await startHarness({ executionBackend: createOpenAIBackend({ apiKey: "sk-names", baseURL: fake.baseURL }) });
});

afterAll(async () => {
  await h?.close();
  await h?.runtime.close();
  await fake?.close();
  await tracing?.shutdown();
});

describe("client-chosen names in spans", () => {
  it("are cut to a bounded length in span names and attributes", async () => {
    const { management, catalog, interaction } = h.connect("grpc");
    const bundle = bundleOf({ bundleId: "long", profiles: [{ name: "p", model: LONG }] });
    await management.putConfigBundle({ bundle });
    const { worker } = await catalog.createWorker({
      runtimeId: h.runtime.runtimeId,
      profile: { source: { case: "bundle", value: { bundleId: "long", digest: bundle.digest, profile: bundle.profiles[0]?.name ?? "" } } },
    });
    fake.enqueue(reply({ text: "ok" }));
    const { run } = await interaction.sendInput({ worker: worker?.ref, input: { text: "hi" } });
    await eventually(
      async () => (await interaction.getRun({ worker: worker?.ref, runId: run?.runId ?? "" })).run?.status === RunStatus.COMPLETED,
      10_000,
      "the run completed",
    );
    await eventually(() => memory.getFinishedSpans().some((span) => span.name.startsWith("chat ")), 5_000, "the chat span");
    const spans = memory.getFinishedSpans();
    expect(spans.some((span) => span.name.startsWith("invoke_agent "))).toBe(true);
    for (const span of spans) {
      expect(span.name.length, span.name.slice(0, 40)).toBeLessThanOrEqual(300);
      for (const value of Object.values(span.attributes)) expect(String(value).length).toBeLessThanOrEqual(300);
    }
  });
});
