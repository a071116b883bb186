import { afterEach, describe, expect, it } from "vitest";
import type { Usage, WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { createOpenAIBackend, openAIBackendOptionsFromEnv } from "../../src/engine/index.js";
import { startFakeOpenAI, type FakeOpenAI } from "../support/fake-openai.js";
import { PROTOCOLS, runToEnd, startHarness, type Harness } from "../support/harness.js";
import { reply, replyChunks } from "../support/openai-chunks.js";

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

/**
 * Many compatible servers send no usage at all (even asked with
 * `stream_options.include_usage`), and a stream can be cut after its finish
 * reason but before the usage chunk. The answer is whole, but its tokens
 * were never reported: the run used to show 0 tokens as if they had been
 * measured. The Runtime does not make numbers up; it says how many of the
 * counted requests went unreported.
 */
describe("a response that reports no usage", () => {
  it("is counted as unreported, on the run and the worker, rather than passed off as 0 tokens measured", async () => {
    fake = await startFakeOpenAI();
    const backend = createOpenAIBackend(openAIBackendOptionsFromEnv({ OPENAI_API_KEY: "sk-test", OPENAI_BASE_URL: fake.baseURL }));
    harness = await startHarness({ executionBackend: backend });
    for (const protocol of PROTOCOLS) {
      const clients = harness.connect(protocol);
      const runtimeId = (await clients.management.getRuntime({})).runtime?.runtimeId ?? "";
      const worker = (await clients.catalog.createWorker({ runtimeId })).worker?.ref as WorkerRef;

      // A server that never sends usage.
      fake.enqueue(reply({ text: "one" }));
      const silent = await runToEnd(clients, worker, "hi");
      expect(silent?.status).toBe(RunStatus.COMPLETED);
      expect(usageCounts(silent?.usage)).toEqual({ tokens: [0n, 0n], modelRequests: 1n, unreportedRequests: 1n });

      // A stream cut after its finish reason, before the usage chunk: whole, not asked again, tokens unreported.
      const chunks = replyChunks({ text: "two", usage: { prompt: 3, completion: 7 } });
      fake.enqueue({ kind: "stream", chunks, end: "cut", cutAfter: chunks.length - 1 });
      const cut = await runToEnd(clients, worker, "hi");
      expect(cut?.status).toBe(RunStatus.COMPLETED);
      expect(usageCounts(cut?.usage)).toEqual({ tokens: [0n, 0n], modelRequests: 1n, unreportedRequests: 1n });

      fake.enqueue(reply({ text: "three", usage: { prompt: 3, completion: 7 } }));
      const reported = await runToEnd(clients, worker, "hi");
      expect(usageCounts(reported?.usage)).toEqual({ tokens: [3n, 7n], modelRequests: 1n, unreportedRequests: 0n });

      const total = (await clients.catalog.getWorker({ worker })).worker?.usage;
      expect(usageCounts(total)).toEqual({ tokens: [3n, 7n], modelRequests: 3n, unreportedRequests: 2n });
    }
    expect(fake.requests).toHaveLength(6);
  });
});

function usageCounts(usage: Usage | undefined): { tokens: bigint[]; modelRequests?: bigint; unreportedRequests?: bigint } {
  return {
    tokens: [usage?.inputTokens ?? -1n, usage?.outputTokens ?? -1n],
    modelRequests: usage?.modelRequests,
    unreportedRequests: usage?.unreportedRequests,
  };
}
