import { Code } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BusyPolicy } from "../../gen/worker_runtime/v1/common_pb.js";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { expectError } from "../support/errors.js";
import { eventually, type Harness, PROTOCOLS, startHarness } from "../support/harness.js";
import { holdOpen, ScriptedBackend } from "../support/scripted-backend.js";

/**
 * Watchers and StreamInput calls take a worker's event stream from two pools
 * of `maxWatchersPerWorker` each: watchers (any caller may open one) filling
 * theirs must not refuse the worker its input path, and StreamInput calls
 * have a bound of their own.
 */

const backend = new ScriptedBackend();
let harness: Harness;

beforeAll(async () => {
  harness = await startHarness({ executionBackend: backend, limits: { maxWatchersPerWorker: 2 } });
});

afterAll(async () => {
  await harness?.close();
});

describe("a worker's watch slots and StreamInput slots", () => {
  it.each(PROTOCOLS)("are counted apart, each refused LIMIT_EXCEEDED past its own bound, over %s", async (protocol) => {
    const clients = harness.connect(protocol);
    const worker = (await clients.catalog.createWorker({ runtimeId: harness.runtime.runtimeId })).worker?.ref;
    const watchers = [new AbortController(), new AbortController()];
    for (const controller of watchers) {
      await clients.observation.watchWorker({ worker }, { signal: controller.signal })[Symbol.asyncIterator]().next();
    }
    const thirdWatch = await expectError(() => clients.observation.watchWorker({ worker })[Symbol.asyncIterator]().next());
    expect([thirdWatch.error.code, thirdWatch.detail?.reason, thirdWatch.error.rawMessage]).toEqual([
      Code.ResourceExhausted,
      ErrorReason.LIMIT_EXCEEDED,
      `worker ${worker?.workerId} already has 2 watchers`,
    ]);

    // With every watch slot held, input still goes in by StreamInput: the first runs, the second queues.
    const held = holdOpen("partial");
    backend.enqueue(held.script);
    const inputs = [new AbortController(), new AbortController()];
    const first = clients.interaction.streamInput({ worker, input: { text: "one" } }, { signal: inputs[0]?.signal });
    const firstOpened = await first[Symbol.asyncIterator]().next();
    expect(firstOpened.done).toBe(false);
    await held.started;
    const second = clients.interaction.streamInput(
      { worker, input: { text: "two" }, busyPolicy: BusyPolicy.ENQUEUE },
      { signal: inputs[1]?.signal },
    );
    expect((await second[Symbol.asyncIterator]().next()).done).toBe(false);
    await eventually(
      async () => {
        const runs = (await clients.interaction.listRuns({ worker })).runs;
        return runs.some((run) => run.status === RunStatus.QUEUED);
      },
      5_000,
      "the second input queued",
    );

    const thirdInput = await expectError(() =>
      clients.interaction
        .streamInput({ worker, input: { text: "three" }, busyPolicy: BusyPolicy.ENQUEUE })
        [Symbol.asyncIterator]()
        .next(),
    );
    expect([thirdInput.error.code, thirdInput.detail?.reason, thirdInput.detail?.metadata["limit"], thirdInput.error.rawMessage]).toEqual([
      Code.ResourceExhausted,
      ErrorReason.LIMIT_EXCEEDED,
      "2",
      `worker ${worker?.workerId} already has 2 StreamInput streams`,
    ]);
    // A bad input is still named as such with every StreamInput slot taken (it is checked first).
    const bad = await expectError(() =>
      clients.interaction
        .streamInput({ worker, input: { text: "" } })
        [Symbol.asyncIterator]()
        .next(),
    );
    expect([bad.error.code, bad.detail?.reason, bad.detail?.metadata["field"]]).toEqual([
      Code.InvalidArgument,
      ErrorReason.INVALID_ARGUMENT,
      "input.text",
    ]);
    // Refused before it was sent: only "one" and "two" became runs.
    expect((await clients.interaction.listRuns({ worker })).runs).toHaveLength(2);

    held.release();
    for (const controller of [...watchers, ...inputs]) controller.abort();
    await eventually(() => harness.runtime.stats().subscriptions === 0, 5_000, "every slot released");
  });
});
