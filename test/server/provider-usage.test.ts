import { afterEach, describe, expect, it } from "vitest";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { createOpenAIBackend, openAIBackendOptionsFromEnv } from "../../src/engine/index.js";
import { startFakeOpenAI, type FakeOpenAI } from "../support/fake-openai.js";
import { runToEnd, startHarness, type Harness } from "../support/harness.js";
import { reply } from "../support/openai-chunks.js";

/**
 * Usage counts are uint64 on the wire, but a provider's JSON can hold any
 * number. A count outside uint64 (negative, or past 2^64 - 1) used to be
 * added to the run and the worker as it was: no copy of either could be made
 * any more (clone refuses the value), so the run was never recorded and
 * stayed RUNNING, and GetWorker failed INTERNAL for good. Counts are clamped
 * into uint64 on the way in, and sums stop at its top.
 */

const UINT64_MAX = 2n ** 64n - 1n;

let fake: FakeOpenAI | undefined;
let harness: Harness | undefined;

afterEach(async () => {
  await harness?.close();
  await fake?.close();
  harness = undefined;
  fake = undefined;
});

describe("a provider's token counts outside uint64", () => {
  it("are clamped: the runs complete, and the worker's totals stop at the top instead of breaking it", async () => {
    fake = await startFakeOpenAI();
    const backend = createOpenAIBackend(openAIBackendOptionsFromEnv({ OPENAI_API_KEY: "sk-test", OPENAI_BASE_URL: fake.baseURL }));
    harness = await startHarness({ executionBackend: backend });
    const clients = harness.connect("grpc");
    const runtimeId = (await clients.management.getRuntime({})).runtime?.runtimeId ?? "";
    const worker = (await clients.catalog.createWorker({ runtimeId })).worker?.ref as WorkerRef;

    fake.enqueue(reply({ text: "one", usage: { prompt: -5, completion: 1e20 } }));
    const first = await runToEnd(clients, worker, "hi");
    expect(first?.status).toBe(RunStatus.COMPLETED);
    expect([first?.usage?.inputTokens, first?.usage?.outputTokens]).toEqual([0n, UINT64_MAX]);

    fake.enqueue(reply({ text: "two", usage: { prompt: 3, completion: 7 } }));
    const second = await runToEnd(clients, worker, "hi");
    expect(second?.status).toBe(RunStatus.COMPLETED);
    expect([second?.usage?.inputTokens, second?.usage?.outputTokens]).toEqual([3n, 7n]);

    const usage = (await clients.catalog.getWorker({ worker })).worker?.usage;
    expect([usage?.inputTokens, usage?.outputTokens]).toEqual([3n, UINT64_MAX]);
  });
});
